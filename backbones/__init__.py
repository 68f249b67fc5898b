"""Model code: the ViT encoder, the MAE, the dVAE tokenizer, baselines and checkpoint interop."""
