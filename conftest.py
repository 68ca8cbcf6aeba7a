"""Root pytest configuration: the notebook-client stall workaround for nbmake runs.

See :mod:`optimal_scaling.course.execute` for the stall and the fix.
"""

from __future__ import annotations

from optimal_scaling.course.execute import patch_client_stall

patch_client_stall()
