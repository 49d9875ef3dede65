"""Example models: the default test pattern, video filters and a torch model."""
