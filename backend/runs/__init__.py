"""The app's side of training jobs: the job manager (start, queue, adopt, abort), resume, compare, speed."""
