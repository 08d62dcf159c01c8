"""Design-space search: surrogates and optimizers over hardware and mappings."""
