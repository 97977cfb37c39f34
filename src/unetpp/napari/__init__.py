"""A napari plugin: segment with one UNet++ file, the ensemble or any depth, and all depths side by side.

Install with ``pip install 'unetpp[napari]'``; napari finds it through the ``napari.manifest`` entry
point (``napari.yaml`` beside this file):

* :mod:`.widget`: the dock widget "unetpp: segment" (Qt; imported by napari only), :mod:`.table`, its
  "compare depths" table, and :mod:`.layers`, where its results go in the viewer;
* :mod:`.core`: the work without Qt (open a model file, layer -> inputs, segment) and :mod:`.compare`
  (every depth on one image, with scores);
* :mod:`.sample`: the sample data (the demo's synthetic EM image and a tiny UNet++ trained at first use);
* :mod:`.guard`: importing ``torch._dynamo`` in a napari session without a crash.

``import unetpp`` imports none of this, and ``import unetpp.napari`` imports neither napari nor Qt.
"""

from pathlib import Path

MANIFEST = Path(__file__).with_name("napari.yaml")


def register_manifest() -> None:
    """Register the plugin with napari's plugin engine (npe2) unless it is already known.

    An installed unetpp is found through its entry point; this is for a source tree on ``PYTHONPATH``
    (scripts, tests), whose installed metadata may predate the plugin.
    """
    from npe2 import PluginManager, PluginManifest

    manager = PluginManager.instance()
    if "unetpp" not in {m.name for m in manager.iter_manifests()}:
        manager.register(PluginManifest.from_file(MANIFEST))
