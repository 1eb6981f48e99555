"""Standard trainer extensions: evaluation, logging, schedules, snapshots."""

from ktrainer.training.extensions import snapshot_writers
from ktrainer.training.extensions._snapshot import snapshot, snapshot_object
from ktrainer.training.extensions.evaluator import Evaluator
from ktrainer.training.extensions.exponential_shift import ExponentialShift
from ktrainer.training.extensions.fail_on_non_number import FailOnNonNumber
from ktrainer.training.extensions.inverse_shift import InverseShift
from ktrainer.training.extensions.linear_shift import LinearShift
from ktrainer.training.extensions.log_report import LogReport
from ktrainer.training.extensions.micro_average import MicroAverage
from ktrainer.training.extensions.multistep_shift import MultistepShift
from ktrainer.training.extensions.parameter_statistics import ParameterStatistics
from ktrainer.training.extensions.plot_report import PlotReport
from ktrainer.training.extensions.polynomial_shift import PolynomialShift
from ktrainer.training.extensions.preemption_handler import PreemptionHandler
from ktrainer.training.extensions.print_report import PrintReport
from ktrainer.training.extensions.progress_bar import ProgressBar
from ktrainer.training.extensions.step_shift import StepShift
from ktrainer.training.extensions.value_observation import observe_lr, observe_value
from ktrainer.training.extensions.variable_statistics_plot import (
    VariableStatisticsPlot,
)
from ktrainer.training.extensions.warmup_shift import WarmupShift

__all__ = [
    "Evaluator",
    "ExponentialShift",
    "FailOnNonNumber",
    "InverseShift",
    "LinearShift",
    "LogReport",
    "MicroAverage",
    "MultistepShift",
    "ParameterStatistics",
    "PlotReport",
    "PolynomialShift",
    "PreemptionHandler",
    "PrintReport",
    "ProgressBar",
    "StepShift",
    "VariableStatisticsPlot",
    "WarmupShift",
    "observe_lr",
    "observe_value",
    "snapshot",
    "snapshot_object",
    "snapshot_writers",
]
