"""maebench: MAE pretraining and a transfer-learning benchmark for pretrained ViTs."""

__version__ = "0.1.0"
