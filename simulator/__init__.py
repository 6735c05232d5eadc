"""A local simulator of the CareCloud Enterprise API for testing and benchmarking the card lookup worker.

Run it with ``python -m simulator``. Tests start it through `simulator.testing.SimulatorProcess`.
"""

from .api import BASE_PATH
from .app import create_app
from .data import generated_card_number, generated_secondary_card_number, load_data
from .state import Simulator

__all__ = [
    "BASE_PATH",
    "Simulator",
    "create_app",
    "generated_card_number",
    "generated_secondary_card_number",
    "load_data",
]
