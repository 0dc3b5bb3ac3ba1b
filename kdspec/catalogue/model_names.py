"""How models from other libraries are named in a spec, and what to install for them: shared by
the registry that names their builders and the builders themselves (which must not import the
registry that names them)."""

from __future__ import annotations

TORCHVISION_PREFIX = "torchvision:"
TIMM_PREFIX = "timm:"
#: Any Hugging Face ``transformers`` sequence classifier: ``hf:bert-base-uncased``,
#: ``hf:google/bert_uncased_L-2_H-128_A-2``, or ``hf:/a/local/folder`` (for text datasets).
HF_PREFIX = "hf:"
MSG_NO_TRANSFORMERS = ("install it with `pip install 'kdspec[text]'` (or `pip install "
                       "transformers`) to use hf:NAME models and text datasets")
MSG_NO_TIMM = ("install it with `pip install 'kdspec[timm]'` (or `pip install timm`) to use "
               "timm:NAME models")
