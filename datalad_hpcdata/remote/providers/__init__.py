"""URL resolvers (Zenodo, DOI, vdi) of the special remote."""
