"""Content stores of the special remote (S3, iRODS)."""
