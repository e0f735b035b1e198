"""Usage ledger: every upstream attempt, kept in memory or in SQLite, queried to rebuild limits."""

from .ledger import Attempt, HourRow, RequestRecord, UsageLedger, UsageRow
from .memory import MemoryLedger
from .sqlite import SQLiteLedger

__all__ = [
    "Attempt",
    "HourRow",
    "MemoryLedger",
    "RequestRecord",
    "SQLiteLedger",
    "UsageLedger",
    "UsageRow",
]
