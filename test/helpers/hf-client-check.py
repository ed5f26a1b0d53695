# Runs the real huggingface_hub client against the hub fixture (HF_ENDPOINT points at it) and
# prints what it downloaded as JSON: {"file": sha256 of hf_hub_download's file, "snapshot":
# {relative path: sha256} of snapshot_download's directory}. Arguments: repo_id repo_type
# filename revision token ("" for none) cache_dir.
import hashlib
import json
import os
import sys

from huggingface_hub import hf_hub_download, snapshot_download

repo_id, repo_type, filename, revision, token, cache_dir = sys.argv[1:7]
token = token or None


def sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


file_path = hf_hub_download(repo_id=repo_id, repo_type=repo_type, filename=filename, revision=revision, token=token, cache_dir=cache_dir)
snap = snapshot_download(repo_id=repo_id, repo_type=repo_type, revision=revision, token=token, cache_dir=cache_dir)
files = {}
for root, _, names in os.walk(snap):
    for n in names:
        p = os.path.join(root, n)
        files[os.path.relpath(p, snap)] = sha(p)
print(json.dumps({"file": sha(file_path), "snapshot": files}))
