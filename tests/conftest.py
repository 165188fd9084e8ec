import os

import matplotlib

matplotlib.use("Agg")  # no display in tests
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
