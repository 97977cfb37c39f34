"""Training on Lightning: the LightningModule, the DataModule and fit()."""
