"""`python -m ai_api.fakes --flavor groq --port 8001`: serve one fake upstream until interrupted.

`--flavor openai` serves the generic OpenAI-compatible fake; `--chat-path` and `--models-path`
mount it where a preset's base URL expects it (e.g. `/api/v1/chat/completions`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from collections.abc import Sequence

from .flavors import FLAVORS
from .server import FakeUpstream

log = logging.getLogger("ai_api.fakes")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m ai_api.fakes", description="Serve a fake LLM upstream on loopback."
    )
    parser.add_argument("--flavor", choices=sorted(FLAVORS), required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--api-key", default=None, help="key to require (default: any)")
    parser.add_argument("--token-delay", type=float, default=0.0, help="seconds between tokens")
    parser.add_argument("--answer-tokens", type=int, default=20)
    parser.add_argument(
        "--enforce-limits", action="store_true", help="answer 429 once the free tier runs dry"
    )
    parser.add_argument(
        "--record", action="store_true", help="keep every request in memory (off for benchmarks)"
    )
    parser.add_argument("--chat-path", default=None, help="serve chat here, not the flavor's path")
    parser.add_argument("--models-path", default=None, help="serve the model list here")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    """Run the fake until cancelled."""
    fake = FakeUpstream(
        FLAVORS[args.flavor].mounted(args.chat_path, args.models_path),
        api_key=args.api_key,
        token_delay=args.token_delay,
        answer_tokens=args.answer_tokens,
        host=args.host,
        port=args.port,
        record_requests=args.record,
        enforce_limits=args.enforce_limits,
    )
    async with fake:
        log.info("fake %s listening on %s", fake.flavor.label, fake.base_url)
        await asyncio.Event().wait()


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args))


if __name__ == "__main__":
    main()
