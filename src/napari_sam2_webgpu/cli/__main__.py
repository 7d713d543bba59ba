"""``python -m napari_sam2_webgpu.cli``: the ``napari-sam2-webgpu`` command."""

import sys

from . import main

sys.exit(main())
