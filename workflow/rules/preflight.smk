# Runs before `configfile:` reads config/config.yaml: from another directory, or with a
# broken or empty config/config.yaml, Snakemake's own errors name neither the cause nor the
# file and line. (A broken --configfile overlay is read by Snakemake before any workflow
# code; `python -m softpick_repro.config config/config.yaml OVERLAY` names its line.)
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from softpick_repro.config import ConfigError, load_yaml
from softpick_repro.plancheck import check_working_directory

try:
    check_working_directory(workflow.basedir, Path.cwd())
    load_yaml("config/config.yaml")
except ConfigError as err:
    raise WorkflowError(str(err)) from None
