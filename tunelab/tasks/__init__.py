"""Tasks: what a model learns. Each implements the declared ``base.Task`` protocol in full; ``TASKS`` maps
config names to task objects and is checked when it is built (see base.py for how to add a task).
Importing this package does not import torch."""

from tunelab.tasks.base import Task, register
from tunelab.tasks.causal_lm import CausalLM
from tunelab.tasks.classification import Classification
from tunelab.tasks.masked_lm import MaskedLM
from tunelab.tasks.multi_label import MultiLabel
from tunelab.tasks.multitask import MultiTask
from tunelab.tasks.prompt_classification import PromptClassification
from tunelab.tasks.regression import Regression
from tunelab.tasks.retrieval import Retrieval
from tunelab.tasks.seq2seq import Seq2Seq
from tunelab.tasks.token_classification import TokenClassification

TASKS: dict[str, Task] = register(
    Classification(),
    TokenClassification(),
    CausalLM(),
    MultiLabel(),
    Regression(),
    PromptClassification(),
    Seq2Seq(),
    MaskedLM(),
    Retrieval(),
    MultiTask(),
)
