"""Killed jobs and two writers: ``handvox synth`` and ``handvox train`` killed (SIGKILL) at random
points and rerun give outputs byte-identical to an uninterrupted run, with no temporary file left;
a second writer on a folder is refused. docs/benchmarks.md, "Faults", records a run.

1. **Reference**: each command once, uninterrupted, timed (``T``).
2. **Kills**: ``--kills`` times per command, a fresh folder, the command started and killed after
   a delay drawn uniformly from ``[0, T]`` (``--seed``), then rerun (more kills of the rerun with
   probability 1/2, so that some runs resume a resumed run), then run to the end. Compared with
   the reference: every chunk file (synth) or both model folders' files and the log's columns
   without times (train), byte for byte; and no ``*.tmp*`` left anywhere in the folder.
3. **Two writers**: the same command started twice on one folder at once: one runs, the other
   exits 2 naming the lock; the folder ends identical to the reference.

The full-disk, read-only and blocked-path matrix is ``tests/cli/test_faults.py``.

    python benchmarks/faults.py --kills 20 --out /tmp/faults
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests.train.toy: the tests' own toy training config


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "handvox.cli", *args]


def synth_cmd(out: Path, frames: int = 96) -> list[str]:
    # The hand renderer, small frames: chunks of 8 so that a kill lands inside a chunk or between.
    return _cmd("synth", "--out", str(out), "--frames", str(frames), "--seed", "5",
                "--chunk-size", "8", "--camera", "240,240,80,60,160,120", "--quiet")  # fmt: skip


def train_cmd(out: Path, config: Path, epochs: int | None = None) -> list[str]:
    more = ["--epochs", str(epochs)] if epochs else []
    return _cmd("train", "--config", str(config), "--out", str(out), "--quiet", *more)


def files(root: Path, kind: str) -> dict[str, bytes]:
    """What must match the reference: chunk files, or model weights and the log without times."""
    if kind == "synth":
        return {str(p.relative_to(root)): p.read_bytes()
                for p in sorted((root / "chunks").rglob("*")) if p.is_file()}  # fmt: skip
    out = {f"{m}/model.safetensors": (root / m / "model.safetensors").read_bytes()
           for m in ("best", "last")}  # fmt: skip
    with open(root / "log.csv") as f:
        rows = [{k: v for k, v in r.items() if "time" not in k and "per_s" not in k}
                for r in csv.DictReader(f)]  # fmt: skip
    out["log.csv"] = json.dumps(rows).encode()
    return out


def temporaries(root: Path) -> list[str]:
    return [str(p) for p in root.rglob("*") if ".tmp" in p.name]


def run(cmd: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, env=env)


def killed_after(cmd: list[str], delay: float, env: dict) -> bool:
    """Start ``cmd``, SIGKILL it after ``delay`` s; True if it was still running then."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        proc.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=20, help="killed runs per command")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("/tmp/handvox-faults"))
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HANDVOX_SCAN_CACHE": "off"}
    args.out.mkdir(parents=True, exist_ok=True)

    from tests.train.toy import toy_config  # noqa: E402 (after the path)

    data = args.out / "toy"
    if not (data / "meta.json").exists():
        subprocess.run(_cmd("synth", "--out", str(data), "--frames", "160", "--seed", "3",
                            "--generator", "toy", "--camera", "150,150,80,60,160,120",
                            "--chunk-size", "64", "--quiet"), check=True, env=env)  # fmt: skip
    # A checkpoint every 2 steps: kills land between, on and during checkpoint writes.
    cfg = dataclasses.replace(toy_config(data), epochs=2, checkpoint_every=2)
    config = args.out / "train.json"
    config.write_text(json.dumps(cfg.to_dict()))
    commands = {"synth": synth_cmd, "train": lambda out: train_cmd(out, config)}
    # Long enough that the second writer surely meets the first at work.
    long = {
        "synth": lambda out: synth_cmd(out, 960),
        "train": lambda out: train_cmd(out, config, 12),
    }

    rows = []
    for kind, make in commands.items():
        ref = args.out / f"{kind}-reference"
        if ref.exists():
            subprocess.run(["rm", "-rf", str(ref)], check=True)
        t0 = time.perf_counter()
        proc = run(make(ref), env)
        whole = time.perf_counter() - t0
        assert proc.returncode == 0, proc.stderr[-2000:]
        expected = files(ref, kind)
        same = killed = left = 0
        for k in range(args.kills):
            folder = args.out / f"{kind}-kill{k:02d}"
            subprocess.run(["rm", "-rf", str(folder)], check=True)
            kills = 0
            while True:
                kills += killed_after(make(folder), float(rng.uniform(0, whole)), env)
                if rng.random() < 0.5:
                    break
            proc = run(make(folder), env)
            ok = proc.returncode == 0 and files(folder, kind) == expected
            same += ok
            killed += kills > 0
            left += bool(temporaries(folder))
            print(f"{kind} {k:2d}: killed {kills}x, rerun {'identical' if ok else 'DIFFERS'}"
                  f"{', temporaries left' if temporaries(folder) else ''}", flush=True)  # fmt: skip
        # Two writers at once on one folder: the second is refused, the first ends whole.
        folder = args.out / f"{kind}-two"
        subprocess.run(["rm", "-rf", str(folder)], check=True)
        a = subprocess.Popen(long[kind](folder), stderr=subprocess.PIPE, text=True, env=env)
        marker = folder / ("chunks/chunk_000000" if kind == "synth" else "log.csv")
        while not marker.exists() and a.poll() is None:
            time.sleep(0.01)
        b = run(long[kind](folder), env)
        a_err = a.communicate()[1]
        two_ok = (a.returncode == 0 and b.returncode == 2 and "another process" in b.stderr
                  and not temporaries(folder))  # fmt: skip
        print(f"{kind}: two writers: first exit {a.returncode}, second exit {b.returncode}: "
              f"{b.stderr.strip()[-160:]}{a_err[-200:] if a.returncode else ''}")  # fmt: skip
        rows.append((kind, whole, args.kills, killed, same, left, two_ok))

    print(
        "\n| command | uninterrupted | runs | killed at least once | rerun identical "
        "| temporaries left | second writer refused, first ends whole |"
    )
    print("|---|---|---|---|---|---|---|")
    for kind, whole, n, killed, same, left, two in rows:
        print(
            f"| `handvox {kind}` | {whole:.1f} s | {n} | {killed} | {same}/{n} | {left} | "
            f"{'yes' if two else 'NO'} |"
        )


if __name__ == "__main__":
    main()
