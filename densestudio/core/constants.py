"""Vocabulary shared by every layer: label sources, split names, model file formats.

They live apart from ``core.models`` (the ORM tables) so ui/ and the CLI can use them without
importing the tables.
"""

from __future__ import annotations

# Label sources: who decided an image's class.
SOURCE_HUMAN = "human"
SOURCE_FOLDER = "folder"  # imported from the sub-folder name
SOURCE_PREDICTION = "prediction"  # an accepted model prediction
SOURCE_IMPORT = "import"  # set by `densestudio import-labels` (a line's MES, a script)
# The image file changed since it was labeled: the label is kept but needs a person's review;
# such images are left out of training until they are labeled again.
SOURCE_CHANGED = "changed"

SPLITS = ("train", "val", "test")

# Exported model files: the format a file name's extension names.
MODEL_FORMAT_BY_SUFFIX = {".onnx": "onnx", ".pt": "torchscript", ".pth": "torchscript",
                          ".ts": "torchscript"}
