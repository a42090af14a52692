"""The champion model, followed without a restart.

A daemon thread asks the registry every ``serve_alias_poll_s`` which version the serving alias
names; when it moves, the new version is downloaded and loaded completely, and only then does
one attribute assignment publish it. A request reads ``holder.current`` once and uses that
predictor for its features and its price, so no request ever sees half a model.
"""

from __future__ import annotations

import logging
import threading

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from rental.settings import Settings
from training.predictor.price_predictor import PricePredictor

log = logging.getLogger(__name__)


class ModelHolder:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.current: PricePredictor | None = None
        self.error: str | None = None  # why there is no model (or why the last reload failed)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def champion_version(self) -> str:
        client = MlflowClient(self.settings.mlflow_tracking_uri)
        found = client.get_model_version_by_alias(self.settings.registered_model_name, self.settings.serving_alias)
        return str(found.version)

    def refresh(self) -> bool:
        """Load the alias's version if it is not the one served; True if a new one is now served."""
        try:
            version = self.champion_version()
            if self.current is not None and self.current.version == version:
                return False
            predictor = PricePredictor.from_registry(self.settings, version=version)
        except (MlflowException, OSError, ValueError) as exc:
            self.error = f"{self.settings.registered_model_name}@{self.settings.serving_alias}: {exc}"
            log.warning("model not (re)loaded: %s", self.error)
            return False
        previous, self.current, self.error = self.current, predictor, None  # the swap: one assignment
        log.info("serving %s version %s (was %s)", self.settings.registered_model_name, version,
                 previous.version if previous else None)  # fmt: skip
        return True

    def start(self) -> None:
        """Load now, then follow the alias in the background."""
        self.refresh()
        self._thread = threading.Thread(target=self._follow, name="champion-follower", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _follow(self) -> None:
        while not self._stop.wait(self.settings.serve_alias_poll_s):
            self.refresh()
