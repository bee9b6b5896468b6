"""Session-wide test settings. The Hugging Face libraries run offline in every test process
(no test may need the internet); before this file each xdist worker was offline or not
depending on whether it had imported tests/eval_fixtures.py, so a test's outcome could depend
on the worker it landed on. Tests that plan as a user with hub access remove HF_HUB_OFFLINE
from their subprocess's environment explicitly."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
