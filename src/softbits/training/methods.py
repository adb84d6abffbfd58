"""Method registry: name → which quantizer trains in front of the MLP and which is applied after.

The engine never branches on method names; everything method-specific lives here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from softbits.codes import check_bits, check_widths
from softbits.errors import ConfigError

if TYPE_CHECKING:
    from softbits.nn.quantizers import Quantizer

__all__ = ["DEFAULT_MEMBERS", "Method", "METHODS", "ensemble_form", "get_method", "register_method"]

#: members of an ensemble method when the user names no number: 4 had 2.5 % lower validation
#: MSE than one MLP at 2.1x its training time in a CV study on training folds (8: 2.6 % at 3.8x;
#: 16: 4.8 % at 6.7x); benchmarks/results/ensemble_members.json, docs/training.md "Ensembles"
DEFAULT_MEMBERS = 4

#: (n_features, bits, init[, widths]) → quantizer; ``init`` is the user's choice for trainable
#: thresholds, ``widths`` one code width per feature (None: every feature has ``bits``)
QuantizerFactory = Callable[..., "Quantizer"]


def _quantizer(kind: str, **fixed: Any) -> QuantizerFactory:
    """A factory for quantizer ``kind`` (``fixed`` arguments; ``init`` from the user unless fixed).

    The quantizer classes load on the first call: the registry itself imports no torch, so the
    command line can list the methods in its help without that cost.
    """

    def make(n_features: int, bits: int, init: str, widths: tuple[int, ...] | None = None) -> Quantizer:
        from softbits.nn.quantizers import QUANTIZERS

        cls: Any = QUANTIZERS[kind]
        chosen: dict[str, Any] = {} if kind in _NO_INIT else {"init": init}
        if widths is not None:
            chosen["widths"] = widths
        return cls(n_features, bits, **{**chosen, **fixed})

    return make


#: quantizer kinds whose constructor takes no threshold init
_NO_INIT = ("lsq", "llt")


@dataclass(frozen=True)
class Method:
    """A method of the paper's comparison.

    ``train_quantizer`` sits in front of the MLP during training and test; ``post_quantizer`` is
    put in front of an MLP trained on full-precision inputs, for the test only (Po-MQ/Po-QQ).
    ``ensemble``: behind the quantizer sit ``TrainConfig.members`` independent MLPs that train on
    the mean of their losses and predict their mean (the device payload is the quantizer's, as
    for one MLP). ``settings_from``: a settings table without rows for this method lends it the
    rows of that method (same dataset and bits). ``per_feature_widths``: its quantizer takes one
    code width per feature (the threshold family). ``learns_quantizer``: its training
    quantizer has trainable parameters (so ``TrainConfig.threshold_lr_scale`` applies).
    ``paper``: the method is in the paper's comparison (Table 2). ``needs_gbdt``: its thresholds
    come from trees (the GBDT extra), whatever predictor serves.
    """

    name: str
    display: str
    train_quantizer: QuantizerFactory | None = None
    post_quantizer: QuantizerFactory | None = None
    min_bits: int = 1
    min_bits_reason: str = ""
    description: str = ""
    ensemble: bool = False
    settings_from: str | None = None
    per_feature_widths: bool = True
    learns_quantizer: bool = False
    #: one of the paper's Table 2 methods (``reproduce``'s default set); softbits' own are not
    paper: bool = True
    needs_gbdt: bool = False

    @property
    def quantized(self) -> bool:
        return self.train_quantizer is not None or self.post_quantizer is not None

    @property
    def fixed_inputs(self) -> bool:
        """What a predictor reads (its codes, or for ``fp`` the features) follows from the
        training rows alone: no network training moves it, so trees can serve without one."""
        return not self.learns_quantizer and self.post_quantizer is None

    def check_bits(self, bits: object) -> int:
        """``bits`` as an int this method can train with, or the one-line :class:`ConfigError`
        naming the range or the method's minimum and why it exists."""
        bits = check_bits(bits)
        if bits < self.min_bits:
            why = f" ({self.min_bits_reason})" if self.min_bits_reason else ""
            raise ConfigError(f"method {self.name} needs bits >= {self.min_bits}{why}, got {bits}")
        return bits

    def check_widths(self, widths: object) -> tuple[int, ...]:
        """Per-feature ``widths`` this method can train with (0 = feature not sent), or a one-line
        :class:`ConfigError`: full precision and the non-threshold quantizers take none, and every
        sent feature needs the method's minimum width."""
        checked = check_widths(widths)
        if not self.quantized:
            raise ConfigError(f"method {self.name} sends full-precision features; per-feature bit widths do not apply")
        if not self.per_feature_widths:
            raise ConfigError(f"method {self.name} takes one bit width for every feature; per-feature "
                              "widths need a threshold method (bw-sq, bw-mq, bw-qq, sq, pr-*, po-*)")
        narrow = sorted({w for w in checked if 0 < w < self.min_bits})
        if narrow:
            why = f" ({self.min_bits_reason})" if self.min_bits_reason else ""
            raise ConfigError(f"method {self.name} needs bits >= {self.min_bits} for every sent feature{why}, "
                              f"got {', '.join(map(str, narrow))}")
        return checked


METHODS: dict[str, Method] = {}


def register_method(method: Method) -> Method:
    METHODS[method.name] = method
    return method


def get_method(name: str) -> Method:
    try:
        return METHODS[name.lower()]
    except (KeyError, AttributeError):
        raise ConfigError(f"unknown method {name!r}; choose one of: {', '.join(METHODS)}") from None


def ensemble_form(name: str) -> str:
    """The ensemble method for ``--predictor ensemble`` (``bw-sq`` → ``bw-sq-ens``; an ensemble
    method is its own), or a one-line :class:`ConfigError` for a method without one."""
    method = get_method(name)
    if method.ensemble:
        return method.name
    forms = {m.settings_from: m.name for m in METHODS.values() if m.ensemble and m.settings_from}
    if method.name not in forms:
        raise ConfigError(f"predictor ensemble needs a method with an ensemble form ({', '.join(forms)}); "
                          f"{method.name} has none")
    return forms[method.name]


_MIDPOINT = "midpoint decoding needs at least 2 thresholds"
_SYMMETRIC = "the symmetric table needs R = 2^(n-1) - 1 >= 1"

for _m in [
    Method("fp", "FP", description="full precision, no quantization"),
    Method("po-mq", "Po-MQ", post_quantizer=_quantizer("midpoint", init="minmax"),
           min_bits=2, min_bits_reason=_MIDPOINT, description="FP model tested on min-max quantized inputs"),
    Method("po-qq", "Po-QQ", post_quantizer=_quantizer("midpoint", init="quantile"),
           min_bits=2, min_bits_reason=_MIDPOINT, description="FP model tested on quantile quantized inputs"),
    Method("pr-mq", "Pr-MQ", train_quantizer=_quantizer("midpoint", init="minmax"),
           min_bits=2, min_bits_reason=_MIDPOINT, description="fixed min-max quantizer + midpoint decoder in training and test"),
    Method("pr-qq", "Pr-QQ", train_quantizer=_quantizer("midpoint", init="quantile"),
           min_bits=2, min_bits_reason=_MIDPOINT, description="fixed quantile quantizer + midpoint decoder in training and test"),
    Method("sq", "SQ", train_quantizer=_quantizer("soft"),
           learns_quantizer=True,
           description="soft quantization: summed sigmoids, trainable thresholds"),
    Method("bw-mq", "Bw-MQ",
           train_quantizer=_quantizer("bitwise", soft=False, trainable=False, init="minmax"),
           description="hard thermometer bits at fixed min-max thresholds"),
    Method("bw-qq", "Bw-QQ",
           train_quantizer=_quantizer("bitwise", soft=False, trainable=False, init="quantile"),
           description="hard thermometer bits at fixed quantile thresholds"),
    Method("bw-bq", "Bw-BQ",
           train_quantizer=_quantizer("bitwise", soft=False, trainable=False, init="bins"),
           description="hard thermometer bits at tie-aware equal-frequency bins (a frequent value gets "
                       "a bin of its own): the codes trees split on", paper=False),
    Method("bw-tq", "Bw-TQ",
           train_quantizer=_quantizer("bitwise", soft=False, trainable=False, init="splits"),
           description="hard thermometer bits at the gain-weighted quantiles of float32 trees' split points "
                       "(trees fitted on the training part; needs softbits[gbdt])", paper=False, needs_gbdt=True),
    Method("bw-sq", "Bw-SQ",
           train_quantizer=_quantizer("bitwise", soft=True, trainable=True), learns_quantizer=True,
           description="bitwise soft quantization with trainable thresholds (the paper's method)"),
    Method("bw-sq-ens", "Bw-SQ-Ens",
           train_quantizer=_quantizer("bitwise", soft=True, trainable=True),
           ensemble=True, settings_from="bw-sq", learns_quantizer=True, paper=False,
           description="one Bw-SQ quantizer feeding an ensemble of independent MLPs (mean loss and prediction)"),
    Method("lsq", "LSQ", train_quantizer=_quantizer("lsq"), min_bits=2, per_feature_widths=False,
           learns_quantizer=True, min_bits_reason="the signed range needs Q_p = 2^(n-1) - 1 >= 1",
           description="learned step size quantization per feature (Esser et al. 2020)"),
    Method("llt4", "LLT4", train_quantizer=_quantizer("llt", granularity=4), per_feature_widths=False,
           learns_quantizer=True,
           min_bits=2, min_bits_reason=_SYMMETRIC, description="learnable lookup table, granularity 4 (Wang et al. 2022)"),
    Method("llt9", "LLT9", train_quantizer=_quantizer("llt", granularity=9), per_feature_widths=False,
           learns_quantizer=True,
           min_bits=2, min_bits_reason=_SYMMETRIC, description="learnable lookup table, granularity 9 (Wang et al. 2022)"),
]:
    register_method(_m)
