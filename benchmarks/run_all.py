"""`make bench`: every benchmark in one run, written to docs/benchmarks.md."""

from __future__ import annotations

import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import (  # noqa: E402
    advisor_snapshot,
    client_build,
    fill_latency,
    import_time,
    request_overhead,
    session_sharing,
)


def main() -> int:
    target = ROOT / "docs" / "benchmarks.md"
    header = [
        "# Benchmarks",
        "",
        f"Produced by `make bench` (`benchmarks/run_all.py`) on {time.strftime('%Y-%m-%d')} "
        f"({platform.machine()}, Python {platform.python_version()}, a shared 2-core machine: quote "
        "ratios measured in one run).",
        "",
    ]
    sections = [
        import_time.markdown(import_time.measure()),
        request_overhead.markdown(request_overhead.measure()),
        client_build.markdown(client_build.measure()),
        fill_latency.markdown(fill_latency.measure()),
        advisor_snapshot.markdown(advisor_snapshot.measure()),
    ]
    with tempfile.TemporaryDirectory(prefix="ibkr-bench-") as tmp:
        sections.append(session_sharing.run(Path(tmp)))
    report = "\n".join(header) + "\n".join(sections)
    target.write_text(report)
    sys.stdout.write(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
