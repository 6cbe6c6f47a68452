"""Errors a user can cause. The CLI and GUI show their message; never a traceback."""


class DenseStudioError(Exception):
    """Base class for errors whose message is meant for the user."""


class ProjectError(DenseStudioError):
    """The project file cannot be created, opened or changed as asked."""


class ImportFailed(DenseStudioError):
    """An import cannot start (e.g. the folder does not exist)."""


class CancelledError(DenseStudioError):
    """Long work stopped because the user cancelled it."""


class ServerUnreachable(ProjectError):
    """The database server of a shared project cannot be reached (network, server down).

    Nothing was changed; label changes made meanwhile can wait in an ``offline.LabelQueue``.
    """
