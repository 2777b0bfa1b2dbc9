"""The simulated business: a seeded churn generator with drift on purpose, the
Kaggle-layout loader, and a traffic sender for the predictor."""
