"""Deprecated alias: the recipes live in :mod:`softbits.config` (kept for one release)."""

from softbits.config import LR_SCHEDULES, OPTIMIZERS, RECIPES, check_recipe, resolve

__all__ = ["LR_SCHEDULES", "OPTIMIZERS", "RECIPES", "check_recipe", "resolve"]
