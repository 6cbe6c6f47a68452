"""The PySide6 desktop app (see densestudio.ui.app.run_app)."""
