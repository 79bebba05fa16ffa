"""Model intake and the canonical model: TFLite graph view, model card."""
