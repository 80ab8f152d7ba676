# PyInstaller runtime hook: Qt's OpenGL bindings (9 MB) are left out of the frozen app.
# pyqtgraph imports PySide6.QtOpenGL when it starts but uses it only for OpenGL drawing,
# which Cerber never turns on; an empty stand-in satisfies the import.
import sys
import types

sys.modules.setdefault("PySide6.QtOpenGL", types.ModuleType("PySide6.QtOpenGL"))
