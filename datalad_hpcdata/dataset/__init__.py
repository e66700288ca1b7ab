"""The dataset on disk: handle, job store, lock, paths, worktree and git."""
