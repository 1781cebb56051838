"""Pose-transfer fidelity and speed of inverse kinematics on real labels (handvox.hand.ik).

For the NYU (8,252 frames, 14 joints) and ICVL (1,596 frames, 16 joints) test labels in
../shared/data: learn the subject model(s) from the labels (:func:`handvox.hand.ik.fit_subjects`,
300 evenly spaced frames per subject), solve every frame's 30-DOF pose, and report the residual
``|FK(IK(x)) - x|`` per joint and per frame (mean over the joints, and the worst joint), mean
and 95th percentile, for the gradient solver (Levenberg-Marquardt) on all frames and the
paper's particle swarm on an evenly spaced subset (with the gradient solver on the same subset
for comparison). Speed: frames per second of ``solve_ik`` alone (the subject fit is a one-off,
timed separately, on ``--fit-threads`` threads), best of ``--repeats`` runs, with 2 and 1
torch threads.

Fitting the subject on the frames it then solves is right for this benchmark: it measures how
faithfully a pose carries over to the kinematic hand (the paper's pose transfer, Appendix B),
not how well a pose can be estimated.

NYU's test labels come from hands of three sizes (rigid label distances take three values:
wrist1-palm 81.3 mm on frames 0-2439, 70.0 mm on 696 frames, 67.2 mm on the other 5,116), so
NYU is fitted with 3 subject models by default (clusters of the rigid distances); the 1- and
2-model fits are reported for comparison.

Run: ``.venv/bin/python benchmarks/ik_real_labels.py [--json out.json] [--threads 2 1]
[--pso-frames 400] [--nyu-subjects 3]``. Takes about 2-4 minutes on 2 shared cores.
"""

from __future__ import annotations

import os

# OpenMP threads that spin while waiting for a descheduled peer make 2 threads ~7x slower than
# 1 on a loaded 2-core machine (measured: 291 vs 1947 frames/s at load 4.8); passive waiting
# removes that (2116 vs 2072). Must be set before torch starts OpenMP; export
# OMP_WAIT_POLICY=ACTIVE to measure the default.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from handvox.atomic import write_text  # noqa: E402
from handvox.camera import Camera  # noqa: E402
from handvox.hand.ik import IKResult, fit_subjects, solve_ik_subjects  # noqa: E402
from handvox.hand.kinematics import DOF_NAMES, pose_limits  # noqa: E402
from handvox.joints import get_joint_set  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DATASETS = {
    "nyu": ("nyu/nyu_test_groundtruth_label.txt", "nyu14"),
    "icvl": ("icvl/icvl_test_groundtruth_label.txt", "icvl16"),
}


def load(shared: Path, name: str) -> np.ndarray:
    path, joint_set = DATASETS[name]
    m = len(get_joint_set(joint_set))
    uvd = np.loadtxt(shared / "data" / path).reshape(-1, m, 3)
    return Camera.preset(name).uvd_to_xyz(uvd)


def stats(res: IKResult, names: tuple[str, ...]) -> dict:
    r = res.residual.double()

    def mp(t: torch.Tensor) -> dict:
        return {"mean": float(t.mean()), "p95": float(t.quantile(0.95))}

    lo, hi = pose_limits(dtype=res.pose.dtype)
    tol = 1e-4
    inside = bool(((res.pose >= lo - tol) & (res.pose <= hi + tol)).all())
    at_limit = ((res.pose - lo).abs() < tol) | ((res.pose - hi).abs() < tol)
    frac = at_limit.double().mean(0)
    return {
        "frames": r.shape[0],
        "all_joints": mp(r.flatten()),
        "per_frame_mean": mp(r.mean(1)),
        "per_frame_max": mp(r.max(1).values),
        "per_joint": {n: mp(r[:, i]) for i, n in enumerate(names)},
        "within_limits": inside,
        # DOFs that sit on a limit in more than 10 % of the frames (where the labels push).
        "at_limit_fraction": {
            DOF_NAMES[i]: round(float(frac[i]), 3) for i in range(6, 30) if frac[i] > 0.1
        },  # fmt: skip
    }


def timed_solve(x, subjects, labels, threads, repeats, **kw) -> tuple[IKResult, dict]:
    """Best frames/s per thread count; thread counts take turns within each repeat so that
    all see the same moments of a shared machine's load."""
    best = {th: float("inf") for th in threads}
    res = None
    for _ in range(repeats):
        for th in threads:
            torch.set_num_threads(th)
            solve_ik_subjects(x[:64], subjects, labels[:64], **kw)  # warm-up
            t0 = time.perf_counter()
            res = solve_ik_subjects(x, subjects, labels, **kw)
            best[th] = min(best[th], time.perf_counter() - t0)
    return res, {str(th): x.shape[0] / t for th, t in best.items()}


def run_dataset(name: str, x: np.ndarray, n_subjects: int, args) -> dict:
    joint_set = DATASETS[name][1]
    names = get_joint_set(joint_set).names
    torch.set_num_threads(args.fit_threads)
    t0 = time.perf_counter()
    subjects, labels = fit_subjects(x, joint_set, n_subjects, frames=args.fit_frames)
    fit_s = time.perf_counter() - t0
    out = {
        "frames": int(x.shape[0]),
        "joint_set": joint_set,
        "fit": {
            "seconds": fit_s,
            "threads": args.fit_threads,
            "subjects": [
                {
                    "frames_in_cluster": s.info["cluster_frames"],
                    "frames_used": len(s.info["frames"]),
                    "scale_vs_average_adult": s.info["scale"],
                    "fit_residual_mm": s.info["residual_mm"],
                }
                for s in subjects
            ],  # fmt: skip
        },
    }
    res, fps = timed_solve(x, subjects, labels, args.threads, args.repeats)
    out["gradient"] = {"fps": fps, **stats(res, names)}

    sub = np.unique(np.linspace(0, x.shape[0] - 1, args.pso_frames).round().astype(int))
    kw = {"method": "pso", "particles": args.particles, "iters": args.pso_iters,
          "generator": torch.Generator().manual_seed(0)}  # fmt: skip
    res, fps = timed_solve(x[sub], subjects, labels[sub], args.threads, 1, **kw)
    pso = {"fps": fps, "particles": args.particles, "iterations": args.pso_iters,
           **stats(res, names), "objective_mean": float(res.objective.mean())}  # fmt: skip
    torch.set_num_threads(max(args.threads))
    res = solve_ik_subjects(x[sub], subjects, labels[sub])
    pso["gradient_same_frames"] = {
        **stats(res, names),
        "objective_mean": float(res.objective.mean()),
    }
    out["pso"] = pso
    return out


def compare_subject_counts(x: np.ndarray, joint_set: str, counts: list[int], args) -> dict:
    torch.set_num_threads(args.fit_threads)
    rows = {}
    for k in counts:
        subjects, labels = fit_subjects(x, joint_set, k, frames=args.fit_frames)
        r = solve_ik_subjects(x, subjects, labels).residual.double()
        rows[str(k)] = {"mean": float(r.mean()), "p95": float(r.quantile(0.95)),
                        "frame_mean_p95": float(r.mean(1).quantile(0.95)),
                        "clusters": np.bincount(labels).tolist()}  # fmt: skip
    return rows


def markdown(results: dict) -> str:
    lines = []
    for name, d in results["datasets"].items():
        g, p = d["gradient"], d["pso"]
        lines += [f"## {name.upper()} ({d['frames']} frames, {d['joint_set']}, "
                  f"{len(d['fit']['subjects'])} subject model(s))", ""]  # fmt: skip
        for i, s in enumerate(d["fit"]["subjects"]):
            lines.append(f"- subject {i}: {s['frames_in_cluster']} frames, fit on "
                         f"{s['frames_used']}, scale {s['scale_vs_average_adult']:.3f} x "
                         f"average adult, fit residual {s['fit_residual_mm']:.2f} mm")  # fmt: skip
        lines.append(f"- subject fit: {d['fit']['seconds']:.1f} s ({d['fit']['threads']} threads)")
        fps = ", ".join(f"{v:.0f} frames/s ({k} thr)" for k, v in g["fps"].items())
        lines.append(f"- gradient (LM) solve_ik: {fps}")
        fps = ", ".join(f"{v:.1f} frames/s ({k} thr)" for k, v in p["fps"].items())
        lines.append(f"- PSO ({p['particles']} particles x {p['iterations']} iterations) on "
                     f"{p['frames']} frames: {fps}")  # fmt: skip
        lines.append(f"- poses within limits: gradient {g['within_limits']}, "
                     f"PSO {p['within_limits']}")  # fmt: skip
        if g["at_limit_fraction"]:
            lim = ", ".join(f"{k} {v:.0%}" for k, v in g["at_limit_fraction"].items())
            lines.append(f"- DOFs on a limit in >10% of frames (gradient): {lim}")
        cols = ["joint", "gradient mean", "gradient p95", "PSO mean", "PSO p95",
                "gradient mean (PSO frames)"]  # fmt: skip
        head = "| " + " | ".join(cols) + " |"
        lines += ["", "Residual |FK(IK(x)) - x| (mm):", "", head, "| --- " * 6 + "|"]
        gs = p["gradient_same_frames"]
        for j in g["per_joint"]:
            a, b, c = g["per_joint"][j], p["per_joint"][j], gs["per_joint"][j]
            lines.append(f"| {j} | {a['mean']:.2f} | {a['p95']:.2f} | {b['mean']:.2f} | "
                         f"{b['p95']:.2f} | {c['mean']:.2f} |")  # fmt: skip
        for key, label in [("all_joints", "**all joints**"), ("per_frame_mean", "**frame mean**"),
                           ("per_frame_max", "**frame max joint**")]:  # fmt: skip
            a, b, c = g[key], p[key], gs[key]
            lines.append(f"| {label} | {a['mean']:.2f} | {a['p95']:.2f} | {b['mean']:.2f} | "
                         f"{b['p95']:.2f} | {c['mean']:.2f} |")  # fmt: skip
        obj = f"PSO {p['objective_mean']:.1f}, gradient {gs['objective_mean']:.1f}"
        lines.append(f"\nObjective (Eqn 2 + prior, mm^2) on the PSO frames: {obj}\n")
        if "subject_counts" in d:
            lines += ["Number of subject models (gradient, all frames):", "",
                      "| models | clusters | mean | p95 | frame-mean p95 |",
                      "| --- | --- | --- | --- | --- |"]  # fmt: skip
            for k, v in d["subject_counts"].items():
                lines.append(f"| {k} | {v['clusters']} | {v['mean']:.2f} | {v['p95']:.2f} | "
                             f"{v['frame_mean_p95']:.2f} |")  # fmt: skip
            lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=SHARED)
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    ap.add_argument("--nyu-subjects", type=int, default=3)
    ap.add_argument("--compare-subjects", type=int, nargs="*", default=[1, 2],
                    help="also fit NYU with these numbers of subject models")  # fmt: skip
    ap.add_argument("--fit-frames", type=int, default=300)
    ap.add_argument("--fit-threads", type=int, default=1,
                    help="threads for the subject fits (small batches: 1 is faster)")  # fmt: skip
    ap.add_argument("--pso-frames", type=int, default=400)
    ap.add_argument("--particles", type=int, default=48)
    ap.add_argument("--pso-iters", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    args = ap.parse_args()
    if not (args.shared / "data").is_dir():
        raise SystemExit(f"{args.shared}/data is absent: nothing to benchmark")
    results = {
        "torch": torch.__version__,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "cpus": os.cpu_count(),
        "load_average_start": os.getloadavg(),
        "datasets": {},
    }
    for name in args.datasets:
        x = load(args.shared, name)
        n = args.nyu_subjects if name == "nyu" else 1
        d = run_dataset(name, x, n, args)
        if name == "nyu" and args.compare_subjects:
            counts = sorted(set(args.compare_subjects))
            rows = compare_subject_counts(x, "nyu14", [k for k in counts if k != n], args)
            g = d["gradient"]
            rows[str(n)] = {
                "mean": g["all_joints"]["mean"],
                "p95": g["all_joints"]["p95"],
                "frame_mean_p95": g["per_frame_mean"]["p95"],
                "clusters": [s["frames_in_cluster"] for s in d["fit"]["subjects"]],
            }
            d["subject_counts"] = dict(sorted(rows.items(), key=lambda kv: int(kv[0])))
        results["datasets"][name] = d
        print(markdown({"datasets": {name: d}}), flush=True)
    results["load_average_end"] = os.getloadavg()
    print(f"load average (1/5/15 min) at start {results['load_average_start']}, "
          f"end {results['load_average_end']} on {os.cpu_count()} CPUs, "
          f"OMP_WAIT_POLICY={results['omp_wait_policy']}")  # fmt: skip
    if args.json:
        write_text(args.json, json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
