"""Regenerate the README's "Performance" section from bench/results/*.json (``make bench``):
``PYTHONPATH=. python scripts/bench_readme.py`` (``make bench-readme``). The section is this
script's text, bench/summary.py's table and bench/NOTES.md (what the figures mean, where a
target is missed and why); never edit it by hand.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.results import read  # noqa: E402
from bench.summary import summary  # noqa: E402

HEADING = "## Performance"

INTRO = """\
`make bench` (3 minutes on this 2-core machine when it is quiet, up to about 10 when it is
loaded; `IRMI_BENCH_QUICK=1 make bench` about a third of that)
measures every inference route against two baselines **in the same run, with the same
settings**: the same work in-process (the service's own engine or pipeline, no HTTP) and a
minimal one-thread user script (decode, then every committed model in each pass the service
makes, then JSON), in interleaved blocks with repeats, p50 / p95 / CPU per request; the
gateway against the same upload sent straight to tb_service; tb_service at concurrency 16
against tb_service as it was before issue 15 (started from that commit in the same run);
tb_service and the gateway on their HTTP stack (httptools + uvloop) against h11 + asyncio.
Inputs: the data's own sizes (NIH ChestX-ray14 512 px JPEG, Kermany 384 px) and the sizes
users send (1024 px and 2500x3000 JPEG, a 2500x3000 16-bit PNG and DICOM, 3000x4000
mammograms); enlarged films get film-like noise so that their decode costs what a real
film's does (`bench/inputs.py`). Raw figures: `bench/results/*.json`. This section is
regenerated from them by `make bench-readme` (`scripts/bench_readme.py`), never by hand.
Every column is a ratio to the baseline of its row (x 1.00 = as fast; CPU/req x below 1 =
cheaper than the baseline); the route's own figures beside them; compare ratios, not
absolute figures across machines."""


def section() -> str:
    notes_path = REPO / "bench" / "NOTES.md"
    notes = notes_path.read_text().strip() if notes_path.exists() else ""
    return "\n\n".join(p for p in (HEADING, INTRO, summary(), notes) if p) + "\n"


def replace_section(readme: str, body: str) -> str:
    start = readme.index(HEADING + "\n")
    end = readme.find("\n## ", start + len(HEADING))
    return readme[:start] + body + (readme[end:] if end >= 0 else "")


def main() -> int:
    if read("chest") is None and read("gateway") is None and read("mammo") is None:
        print("no bench/results/*.json: run `make bench` first", file=sys.stderr)
        return 1
    path = REPO / "README.md"
    path.write_text(replace_section(path.read_text(), section()))
    print(f"README.md: {HEADING} regenerated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
