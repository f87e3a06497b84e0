"""The end-to-end driving policy (System 1): config, model, checkpoint format and agent."""
