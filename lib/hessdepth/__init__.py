"""hessdepth: Hessian eigenvalue densities of deep networks, with and without skip connections."""
__version__ = "0.1.0"

from .models import build_model, count_params, model_id, parse_model_id, resnet_blocks  # noqa: E402
from .config import ConfigError, check_config, coerce_cli_strings, training_class_counts  # noqa: E402
from .h5io import REBUILD_COMMAND_VARIABLE, OutputError  # noqa: E402
from .jobs import machine_description, rebuild_options, run_identity, run_name, run_time_note, setup_job  # noqa: E402
from .probestore import ProbeStore  # noqa: E402
from .data import (  # noqa: E402
    CifarData,
    DataError,
    balanced_half,
    balanced_subset,
    dataset_attrs,
    describe_dataset,
    download_cifar10,
    file_md5,
    fixed_batches,
    load_dataset_h5,
    normalize,
    read_cifar_archive,
    synthetic_dataset,
    training_half,
    write_dataset_h5,
)
from .device import choose_device, keep_freed_cpu_memory  # noqa: E402
from .training import TrainConfig, TrainingDiverged, load_checkpoint, read_curve, seeded_model, train  # noqa: E402
from .device import no_tf32  # noqa: E402
from .operator import BN_MODES, COMPOSITIONS, HessianOperator, MatrixOperator, OperatorError  # noqa: E402
from .curvature import (  # noqa: E402
    BlockOperator,
    DifferenceOperator,
    GaussNewtonOperator,
    block,
    parameter_indices,
)
from .lanczos import SLQResult, gauss_quadrature, lanczos, lockstep_block, probe_vector, slq  # noqa: E402
from .moments import HutchinsonResult, hutchinson_moments, quadrature_moments, spectral_stats  # noqa: E402
from .density import density, node_spacing_width  # noqa: E402
from .analysis import run_block_moments, run_gauss_newton, run_gradnorms, run_lanczos, run_moments  # noqa: E402
