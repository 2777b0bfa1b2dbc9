"""Code shared by every onebox service: settings, the dataset schema, the prediction log."""
