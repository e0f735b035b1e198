"""Cooldowns and circuits on a fake clock."""

from ai_api.cooldowns import CircuitPolicy, CooldownBook

T0 = 1_800_000_000.0


def test_retry_after_cools_a_member_down():
    book = CooldownBook()
    book.failed("g", T0, retry_at=T0 + 30)
    assert not book.available("g", T0 + 29)
    assert book.available("g", T0 + 30)
    assert book.ready_at("g") == T0 + 30


def test_repeated_failures_open_a_circuit_with_one_probe_after_the_rest():
    book = CooldownBook(CircuitPolicy(threshold=3, base=15, cap=300))
    for _ in range(2):
        book.failed("g", T0)
        assert book.available("g", T0)
    book.failed("g", T0)
    assert book.health["g"].circuit == "open"
    assert not book.available("g", T0 + 14)
    assert book.available("g", T0 + 15)  # the probe may go
    book.begin("g", T0 + 15)
    assert book.health["g"].circuit == "half-open"
    assert not book.available("g", T0 + 15)  # only one probe at a time
    book.failed("g", T0 + 16)  # the probe failed: rest doubles
    assert not book.available("g", T0 + 16 + 29)
    assert book.available("g", T0 + 16 + 30)
    book.begin("g", T0 + 46)
    book.succeeded("g")
    assert book.health["g"].circuit == "closed"
    assert book.available("g", T0 + 46)


def test_rest_is_capped():
    book = CooldownBook(CircuitPolicy(threshold=1, base=100, cap=300))
    now = T0
    for _ in range(5):
        book.failed("g", now)
        rest = book.ready_at("g") - now
        now = book.ready_at("g")
        book.begin("g", now)
    assert rest == 300


def test_cool_without_failure_and_success_forgets_failures():
    book = CooldownBook(CircuitPolicy(threshold=2))
    book.cool("g", T0 + 5)
    assert not book.available("g", T0)
    book.failed("g", T0 + 10)
    book.succeeded("g")
    book.failed("g", T0 + 11)
    assert book.health["g"].circuit == "closed"
