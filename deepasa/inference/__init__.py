"""deepasa.inference: ``analyze`` (any length, cross-window object stitching), its result and the commands.

Public API::

    from deepasa.inference import analyze, load_model
    model = load_model()                      # checkpoints/default.pt, or load_model("my.pt")
    result = analyze(model, "rec.wav")        # SceneAnalysis
    result.save("rec_analysis")               # docs/analyze.md layout + report.html

Note: the package attribute ``deepasa.inference.analyze`` is the function; the module is reached with
``from deepasa.inference.analyze import ...`` (or ``sys.modules``).
"""

from deepasa.inference.analyze import DEFAULT_CHECKPOINT, analyze, load_model
from deepasa.inference.result import SceneAnalysis, SceneObject
from deepasa.inference.stitching import StitchWeights
from deepasa.inference.trajectory_first import analyze_trajectories

__all__ = ["analyze", "analyze_trajectories", "load_model", "DEFAULT_CHECKPOINT", "SceneAnalysis", "SceneObject", "StitchWeights"]
