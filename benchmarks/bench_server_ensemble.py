"""Does the ensemble cost the server? One-sample HTTP latency of a Bw-SQ-Ens model vs plain Bw-SQ.

Runs ``bench_server.py`` (a real ``softbits serve`` subprocess on loopback, driven by a lean
HTTP/CoAP client) on the two saved models in alternation, ``--rounds`` times each, so that load
changes on a shared machine hit both alike, and writes every round's scenarios and the ratio of
the medians over rounds of each scenario's p99. Train the models first with the same network,
e.g. ``softbits train --dataset cpu_act --method bw-sq[-ens] --bits 4 --layers 6 --neurons 128
--epochs 50 --save M``. Writes benchmarks/results/server_ensemble.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from common import save_result

from softbits.provenance import machine_info

HERE = Path(__file__).parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plain", type=Path, required=True, help="the Bw-SQ model file")
    parser.add_argument("--ensemble", type=Path, required=True, help="the Bw-SQ-Ens model file")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per scenario")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "server_ensemble.json")
    args = parser.parse_args()
    runs: dict[str, list[dict]] = {"plain": [], "ensemble": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for name, model in (("plain", args.plain), ("ensemble", args.ensemble)):
                out = Path(tmp) / f"{name}{r}.json"
                subprocess.run([sys.executable, str(HERE / "bench_server.py"), "--model", str(model),
                                "--duration", str(args.duration), "--out", str(out)], check=True)
                runs[name].append(json.loads(out.read_text()))
    ratios = []
    for i, row in enumerate(runs["plain"][0]["results"]):
        p99 = {name: float(np.median([run["results"][i]["latency_ms_p99"] for run in runs[name]]))
               for name in runs}
        ratios.append({k: row[k] for k in ("transport", "samples_per_payload", "concurrency") if k in row} |
                      {"p99_ms_plain": p99["plain"], "p99_ms_ensemble": p99["ensemble"],
                       "ratio": p99["ensemble"] / p99["plain"]})
    save_result({"benchmark": "server_ensemble", "machine": machine_info("torch"),
                 "models": {name: runs[name][0]["model"] for name in runs}, "rounds": args.rounds,
                 "p99_ratios": ratios, "runs": runs}, args.out)
    for row in ratios:
        print(row)


if __name__ == "__main__":
    main()
