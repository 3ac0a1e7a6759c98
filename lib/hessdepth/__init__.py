"""hessdepth: Hessian eigenvalue densities of deep networks, with and without skip connections."""

__version__ = "0.1.0"

from .models import build_model, count_params, model_id, parameter_count, parse_model_id, resnet_blocks
from .h5io import OutputError
from .probestore import ProbeStore
from .data import (
    CifarData,
    DataError,
    balanced_half,
    balanced_subset,
    describe_dataset,
    fixed_batches,
    load_dataset_h5,
    read_dataset_h5,
    normalize,
    synthetic_dataset,
    training_half,
    training_set_size,
    write_dataset_h5,
)
from .cifar_archive import download_cifar10, file_md5, read_cifar_archive
from .device import choose_device, keep_freed_cpu_memory, machine_description, no_tf32
from .checkpoints import load_checkpoint, read_curve
from .snapshots import SnapshotError
from .training import TrainConfig, TrainingDiverged, seeded_model, train
from .operator import LinearOperator, MatrixOperator, Operator, OperatorError
from .loss_operator import BN_MODES, LossOperator
from .hvp import COMPOSITIONS
from .hessian import HessianOperator
from .curvature import (
    BlockOperator,
    DifferenceOperator,
    GaussNewtonOperator,
    block,
    parameter_indices,
)
from .probes import lockstep_size, probe_vector
from .lanczos import SLQResult, gauss_quadrature, lanczos, slq
from .moments import HutchinsonResult, hutchinson_moments, quadrature_moments, spectral_stats
from .density import density, node_spacing_width
