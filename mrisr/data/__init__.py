"""What a dataset is: cases and their splits, the sample scans and the phantom, and the fastai pipeline of patches."""
