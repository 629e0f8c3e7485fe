"""The pixel size an image is analysed at: the user's setting, or the red-cell ruler of the image, or of its case.

The detector was trained at one pixel size and the classifier's crops are a fixed field of view in micrometres, so
every image needs its micrometres per pixel. Red cells (~7.5 um) are a ruler present on every smear
(`workbench.core.scale`); a field with too few isolated red cells (crowded, or zoomed in on one white cell) borrows the
pixel size of the case: the images of one case come from one microscope. Every result records where its pixel size
came from (`source`): setting, estimate, case, detector_rbc (the detector's red-cell class as a second ruler),
weak_estimate, fallback or none.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import numpy as np

if TYPE_CHECKING:
    from workbench.app.config import ScaleSettings

RBC_DIAMETER_UM = 7.5               # as workbench.core.scale (not imported here: that would load OpenCV for a setting)
SECOND_RULER_TRUSTED = 3            # red cells the detector's ruler needs before its size stands for the case
WEAK_MIN_CELLS = 2                  # a weak estimate: at least this many red cells ...
WEAK_MAX_SPREAD = 0.12              # ... whose diameters agree this well (IQR / median) ...
PLAUSIBLE_UM_PER_PX = (0.03, 0.2)   # ... at a pixel size a smear is imaged at (100x oil: ~0.05-0.15 um/px)


class PixelSizeRuler:
    """Measures images one at a time and remembers the trusted estimates of the current case."""

    def __init__(self, settings: ScaleSettings,
                 second_ruler: Callable[[np.ndarray], tuple[float, int] | None] | None = None) -> None:
        self.settings = settings   # the config's `scale` section: um_per_px, estimate, fallback_um_per_px
        self.case_um_per_px: list[float] = []
        # image -> (red-cell diameter px, cells) by another method (the detector's rbc class), or None
        self.second_ruler = second_ruler

    def new_case(self) -> None:
        self.case_um_per_px = []

    def needs_estimate(self, um_per_px: float | None = None) -> bool:
        """Whether measure() would run the red-cell estimate (which a folder run computes ahead, workbench.app.prefetch)."""
        return um_per_px is None and self.settings.um_per_px is None and self.settings.estimate

    def measure(self, image_rgb: np.ndarray, um_per_px: float | None = None, estimate=None) -> dict[str, Any]:
        """{um_per_px, source, ...the estimate's rbc_diameter_px, n_cells, spread, confident}: the call's
        `um_per_px`, else the setting, else the trusted red-cell estimate, else the case's, else a weak estimate,
        else the fallback setting, else None (analysed at its own pixels). `estimate`: the image's
        estimate_rbc_scale, when it was computed ahead."""
        given = um_per_px if um_per_px is not None else self.settings.um_per_px
        if given is not None:
            return {"um_per_px": float(given), "source": "setting"}
        if not self.settings.estimate:
            return {"um_per_px": None, "source": "none"}
        if estimate is None:
            from workbench.core.scale import estimate_rbc_scale

            estimate = estimate_rbc_scale(image_rgb)
        info = {"rbc_diameter_px": None if not np.isfinite(estimate.rbc_diameter_px)
                else round(estimate.rbc_diameter_px, 2), "n_cells": estimate.n_cells,
                "spread": None if not np.isfinite(estimate.spread) else round(estimate.spread, 3),
                "confident": estimate.confident}
        if estimate.confident:
            self.case_um_per_px.append(float(estimate.um_per_px))
            return {"um_per_px": round(estimate.um_per_px, 5), "source": "estimate", **info}
        # Too few isolated red cells in this field: the case's trusted estimates so far are the best ruler, then a
        # weak estimate (a few cells that agree, at a smear-plausible size), then the fallback setting.
        if self.case_um_per_px:
            return {"um_per_px": round(float(np.median(self.case_um_per_px)), 5), "source": "case", **info}
        second = self.second_ruler(image_rgb) if self.second_ruler is not None else None
        if second is not None:
            um = RBC_DIAMETER_UM / second[0]
            if PLAUSIBLE_UM_PER_PX[0] <= um <= PLAUSIBLE_UM_PER_PX[1]:
                if second[1] >= SECOND_RULER_TRUSTED:
                    self.case_um_per_px.append(um)
                return {"um_per_px": round(um, 5), "source": "detector_rbc", **info,
                        "detector_rbc_px": round(second[0], 2), "detector_rbc_cells": second[1]}
        weak = estimate.um_per_px if (estimate.n_cells >= WEAK_MIN_CELLS and np.isfinite(estimate.spread)
                                      and estimate.spread <= WEAK_MAX_SPREAD) else None
        if weak is not None and PLAUSIBLE_UM_PER_PX[0] <= weak <= PLAUSIBLE_UM_PER_PX[1]:
            return {"um_per_px": round(weak, 5), "source": "weak_estimate", **info}
        fallback = self.settings.fallback_um_per_px
        return {"um_per_px": fallback, "source": "fallback" if fallback is not None else "none", **info}
