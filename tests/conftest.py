import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# frozen-feature caches of test runs go to a throwaway folder, never to ~/.cache
os.environ.setdefault("POLYMODAL_CACHE_DIR", tempfile.mkdtemp(prefix="polymodal-test-cache-"))
