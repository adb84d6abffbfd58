"""softbits: trainable bitwise soft quantization of input features (Bw-SQ) and its baselines."""

__version__ = "0.1.0"

from softbits.artifact import TrainedModel  # noqa: E402
from softbits.config import TrainConfig  # noqa: E402
from softbits.data import Dataset, load_dataset, load_table, split_and_scale  # noqa: E402
from softbits.errors import ConfigError, DataError, SoftbitsError  # noqa: E402
from softbits.methods import METHODS, get_method  # noqa: E402
from softbits.pipeline import train_dataset, train_on_split  # noqa: E402
from softbits.quantizers import BitwiseQuantizer, MidpointQuantizer, SoftQuantizer  # noqa: E402
from softbits.schedules import TemperatureSchedule  # noqa: E402

__all__ = [
    "__version__",
    "BitwiseQuantizer",
    "ConfigError",
    "DataError",
    "Dataset",
    "METHODS",
    "MidpointQuantizer",
    "SoftQuantizer",
    "SoftbitsError",
    "TemperatureSchedule",
    "TrainConfig",
    "TrainedModel",
    "get_method",
    "load_dataset",
    "load_table",
    "split_and_scale",
    "train_dataset",
    "train_on_split",
]
