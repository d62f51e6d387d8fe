"""How faithfully a reduced-precision model reproduces its FP32 original, and the gate that acts on it.

Agreement, not accuracy: on unlabelled held-out photos the FP32 model's answer is the reference. ``confident`` counts
only samples where FP32's top-1 probability exceeds 0.5 -- there a disagreement is a real error, not a coin toss
between near-equal classes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from edgeconv.errors import InvalidArgumentError, QuantizationError

CONFIDENT_PROBABILITY = 0.5
# Default gate, from bench/results/int8.md: mobilenet_v2 (ImageNet weights) on 1000 held-out random crops reaches
# 86.4% top-1 agreement (99.7% on confident crops) with edgeconv's defaults (tensorrt form: 81.1% / 98.8%), where
# plain ORT PTQ falls to 54% (82%).
# 0.65 passes the former and refuses the latter. Random crops include many ambiguous views (only a third have FP32
# top-1 probability > 0.5), so overall agreement sits well below confident agreement for every INT8 scheme.
DEFAULT_MIN_AGREEMENT = 0.65


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def sqnr_db(reference: np.ndarray, test: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio 20*log10(|x| / |x - y|) in dB (ORT qdq_loss_debug's metric); inf if equal."""
    ref = np.asarray(reference, dtype=np.float64).ravel()
    noise = np.linalg.norm(ref - np.asarray(test, dtype=np.float64).ravel())
    if noise == 0.0:
        return float("inf")
    return float(20.0 * np.log10(max(float(np.linalg.norm(ref)), 1e-30) / float(noise)))


@dataclass(frozen=True)
class FidelityReport:
    """Agreement of a test model's logits with the FP32 reference on ``samples`` held-out inputs."""

    samples: int
    top1_agreement: float  # fraction in [0, 1]
    confident_samples: int
    confident_agreement: float  # NaN when no sample is confident
    top5_overlap: float  # mean |top5(ref) & top5(test)| / 5
    mean_kl: float  # mean KL(p_ref || p_test) in nats
    output_sqnr_db: float

    def __bool__(self) -> bool:  # truthy like Polygraphy's comparator results: "is there any agreement at all"
        return self.samples > 0 and self.top1_agreement > 0

    def as_dict(self) -> dict[str, float | int]:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}

    def summary(self) -> str:
        conf = (
            f"{self.confident_agreement:.1%} of {self.confident_samples} confident"
            if self.confident_samples
            else "no confident samples"
        )
        return (
            f"top-1 agreement {self.top1_agreement:.1%} of {self.samples} ({conf}), top-5 overlap "
            f"{self.top5_overlap:.1%}, mean KL {self.mean_kl:.4f}, output SQNR {self.output_sqnr_db:.1f} dB"
        )


def compare_logits(
    reference: np.ndarray, test: np.ndarray, *, confident_probability: float = CONFIDENT_PROBABILITY
) -> FidelityReport:
    """Fidelity of ``test`` logits ``(N, classes)`` against ``reference`` logits of the same shape."""
    ref = np.asarray(reference)
    out = np.asarray(test)
    if ref.shape != out.shape or ref.ndim != 2 or ref.shape[0] == 0:
        raise InvalidArgumentError(
            f"logits must be two equal (N, classes) arrays with N > 0, got {ref.shape} and {out.shape}"
        )
    p_ref, p_out = softmax(ref), softmax(out)
    agree = ref.argmax(axis=1) == out.argmax(axis=1)
    confident = p_ref.max(axis=1) > confident_probability
    k = min(5, ref.shape[1])
    top_ref = np.argsort(-ref, axis=1)[:, :k]
    top_out = np.argsort(-out, axis=1)[:, :k]
    overlap = np.mean([len(set(a) & set(b)) / k for a, b in zip(top_ref, top_out, strict=True)])
    kl = np.sum(p_ref * (np.log(np.clip(p_ref, 1e-12, None)) - np.log(np.clip(p_out, 1e-12, None))), axis=1)
    return FidelityReport(
        samples=int(ref.shape[0]),
        top1_agreement=float(agree.mean()),
        confident_samples=int(confident.sum()),
        confident_agreement=float(agree[confident].mean()) if confident.any() else float("nan"),
        top5_overlap=float(overlap),
        mean_kl=float(kl.mean()),
        output_sqnr_db=sqnr_db(ref, out),
    )


def meets_gate(report: FidelityReport, min_agreement: float, min_confident: float = 0.0) -> bool:
    """Top-1 agreement at least ``min_agreement`` overall and ``min_confident`` on the confident samples (vacuous
    when there are none: a random-weight network's softmax is flat)."""
    confident_ok = not report.confident_samples or report.confident_agreement >= min_confident
    return report.top1_agreement >= min_agreement and confident_ok


def check_gate(
    report: FidelityReport, min_agreement: float, *, min_confident: float = 0.0, force: bool = False, hint: str = ""
) -> bool:
    """True when ``report`` clears ``min_agreement`` (top-1, fraction) and ``min_confident`` (top-1 on confident
    samples). Below either: ``QuantizationError`` naming what was measured and what to try, unless ``force`` (then
    False, and the caller writes the artifact anyway)."""
    if not 0.0 <= min_agreement <= 1.0:
        raise InvalidArgumentError(f"--min-agreement {min_agreement} must be a fraction in [0, 1], e.g. 0.85")
    if not 0.0 <= min_confident <= 1.0:
        raise InvalidArgumentError(f"--min-confident-agreement {min_confident} must be a fraction in [0, 1], e.g. 0.99")
    if meets_gate(report, min_agreement, min_confident):
        return True
    if force:
        return False
    tips = hint or (
        "try --fallback auto (keeps the most sensitive layers in float), --calib-method percentile, "
        "more --calib-samples or your own --calib DIR of photos like your deployment data"
    )
    required = f"top-1 agreement >= {min_agreement:.1%}"
    if min_confident:
        required += f" overall and >= {min_confident:.1%} on confident samples"
    raise QuantizationError(
        f"INT8 fidelity below the gate: {report.summary()}; required {required}. {tips}; or pass --force to write it "
        "anyway"
    )
