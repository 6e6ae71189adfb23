"""`sa-experiment`: the paper's comparison (Stable Alignment vs SFT vs the base model) in one command."""
