"""Static pages the prediction service serves (the reviewer page at `/`)."""
