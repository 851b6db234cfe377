"""POV-Ray 3.7.0.10's option tables, and the options the farm owns.

Where it sits: the reader (``reader.py``, ``apply.py``) looks every INI
keyword and ``+X`` switch up here, and ``farm_args.py`` decides from the same
names what the farm drops, keeps or overrides. ``process.py`` appends
``FARM_OPTIONS`` to every render on the worker. Nothing here runs: these are
the tables of ``frontend/processrenderoptions.cpp`` (``RenderOptions_Table``,
``Command_Options``) and the unix front end, spelled as the installed
``povray`` 3.7.0.10 accepts them.
"""

from __future__ import annotations

from pathlib import Path

# POV-Ray's installation (Debian's povray 3.7): the workers have these files.
SYSTEM_SHARE = Path("/usr/share/povray-3.7")
SYSTEM_INI = Path("/etc/povray/3.7/povray.ini")
SYSTEM_INI_OLD = Path("/etc/povray.ini")
# Prefixes inside the upload for files that live outside the scene directory.
LIB_PREFIX = "_lib"
INI_PREFIX = "_ini"
PNG = ".png"

# --- the farm's own options ---------------------------------------------------

# The one definition of what the farm makes every render do: no display
# window, no pause at the end, PNG output. farm_args ends with them, so they
# override whatever an uploaded INI file sets; the worker appends them again
# after the unit's own arguments (process.py), so they win even over a spec
# that did not come from this reader.
FARM_OPTIONS = ("-D", "-P", "+FN")
# The INI keys each of FARM_OPTIONS decides. Video_Mode and Palette only say
# how a display would draw, so -D makes them moot too.
FARM_OPTION_KEYS: dict[str, tuple[str, ...]] = {
    "-D": ("Display", "Video_Mode", "Palette"),
    "-P": ("Pause_When_Done",),
    "+FN": ("Output_To_File", "Output_File_Type"),
}
# Set per unit by the worker (``+SF<f> +EF<f>``, core/spec.py), not here.
FRAME_KEYS = ("Subset_Start_Frame", "Subset_End_Frame")

# --- option tables (POV-Ray 3.7.0.10) -----------------------------------------

INT, FLOAT, BOOL, STR, SPECIAL, OBSOLETE, NONE = (
    "int",
    "float",
    "bool",
    "str",
    "special",
    "obsolete",
    "none",
)

# INI keyword -> (attribute, type). Aliases share an attribute.
INI_ROWS: tuple[tuple[str, str, str], ...] = (
    ("All_Console", "All_Console", BOOL),
    ("All_File", "All_File", STR),
    ("Antialias_Depth", "Antialias_Depth", INT),
    ("Antialias", "Antialias", BOOL),
    ("Antialias_Threshold", "Antialias_Threshold", FLOAT),
    ("Antialias_Gamma", "Antialias_Gamma", FLOAT),
    ("Append_File", "Append_File", BOOL),
    ("Bits_Per_Color", "Bits_Per_Color", INT),
    ("Bits_Per_Colour", "Bits_Per_Color", INT),
    ("Bounding", "Bounding", BOOL),
    ("Bounding_Method", "Bounding_Method", INT),
    ("Bounding_Threshold", "Bounding_Threshold", INT),
    ("BSP_BaseAccessCost", "BSP_BaseAccessCost", FLOAT),
    ("BSP_ChildAccessCost", "BSP_ChildAccessCost", FLOAT),
    ("BSP_ISectCost", "BSP_ISectCost", FLOAT),
    ("BSP_MaxDepth", "BSP_MaxDepth", INT),
    ("BSP_MissChance", "BSP_MissChance", FLOAT),
    ("Buffer_Output", "Buffer_Output", OBSOLETE),
    ("Buffer_Size", "Buffer_Size", OBSOLETE),
    ("Clock", "Clock", FLOAT),
    ("Clockless_Animation", "Clockless_Animation", BOOL),
    ("Compression", "Compression", INT),
    ("Continue_Trace", "Continue_Trace", BOOL),
    ("Create_Histogram", "Create_Histogram", OBSOLETE),
    ("Create_Ini", "Create_Ini", STR),
    ("Cyclic_Animation", "Cyclic_Animation", BOOL),
    ("Debug_Console", "Debug_Console", BOOL),
    ("Debug_File", "Debug_File", STR),
    ("Declare", "Declare", SPECIAL),
    ("Display", "Display", BOOL),
    ("Display_Gamma", "Display_Gamma", SPECIAL),
    ("Dither", "Dither", BOOL),
    ("Dither_Method", "Dither_Method", SPECIAL),
    ("Draw_Vistas", "Draw_Vistas", BOOL),
    ("End_Column", "End_Column", FLOAT),
    ("End_Row", "End_Row", FLOAT),
    ("Fatal_Console", "Fatal_Console", BOOL),
    ("Fatal_Error_Command", "Fatal_Error_Command", SPECIAL),
    ("Fatal_Error_Return", "Fatal_Error_Command", SPECIAL),
    ("Fatal_File", "Fatal_File", STR),
    ("Field_Render", "Field_Render", BOOL),
    ("File_Gamma", "File_Gamma", SPECIAL),
    ("Final_Clock", "Final_Clock", FLOAT),
    ("Final_Frame", "Final_Frame", INT),
    ("Frame_Step", "Frame_Step", INT),
    ("Grayscale_Output", "Grayscale_Output", BOOL),
    ("Height", "Height", INT),
    ("High_Reproducibility", "High_Reproducibility", BOOL),
    ("Histogram_Name", "Histogram_Name", OBSOLETE),
    ("Histogram_Grid_Size", "Histogram_Grid_Size", OBSOLETE),
    ("Histogram_Type", "Histogram_Type", OBSOLETE),
    ("Initial_Clock", "Initial_Clock", FLOAT),
    ("Initial_Frame", "Initial_Frame", INT),
    ("Input_File_Name", "Input_File_Name", STR),
    ("Include_Header", "Include_Header", STR),
    ("Include_Ini", "Include_Ini", SPECIAL),
    ("Jitter_Amount", "Jitter_Amount", FLOAT),
    ("Jitter", "Jitter", BOOL),
    ("Library_Path", "Library_Path", SPECIAL),
    ("Light_Buffer", "Light_Buffer", BOOL),
    ("Max_Image_Buffer_Memory", "Max_Image_Buffer_Memory", INT),
    ("Odd_Field", "Odd_Field", BOOL),
    ("Output_Alpha", "Output_Alpha", BOOL),
    ("Output_File_Name", "Output_File_Name", STR),
    ("Output_File_Type", "Output_File_Type", SPECIAL),
    ("Output_To_File", "Output_To_File", BOOL),
    ("Palette", "Palette", SPECIAL),
    ("Pause_When_Done", "Pause_When_Done", BOOL),
    ("Post_Frame_Command", "Post_Frame_Command", SPECIAL),
    ("Post_Frame_Return", "Post_Frame_Command", SPECIAL),
    ("Post_Scene_Command", "Post_Scene_Command", SPECIAL),
    ("Post_Scene_Return", "Post_Scene_Command", SPECIAL),
    ("Preview_End_Size", "Preview_End_Size", INT),
    ("Preview_Start_Size", "Preview_Start_Size", INT),
    ("Pre_Frame_Command", "Pre_Frame_Command", SPECIAL),
    ("Pre_Frame_Return", "Pre_Frame_Command", SPECIAL),
    ("Pre_Scene_Command", "Pre_Scene_Command", SPECIAL),
    ("Pre_Scene_Return", "Pre_Scene_Command", SPECIAL),
    ("Quality", "Quality", INT),
    ("Radiosity_File_Name", "Radiosity_File_Name", STR),
    ("Radiosity_From_File", "Radiosity_From_File", BOOL),
    ("Radiosity_To_File", "Radiosity_To_File", BOOL),
    ("Radiosity_Vain_Pretrace", "Radiosity_Vain_Pretrace", BOOL),
    ("Real_Time_Raytracing", "Real_Time_Raytracing", BOOL),
    ("Remove_Bounds", "Remove_Bounds", BOOL),
    ("Render_Block_Size", "Render_Block_Size", INT),
    ("Render_Block_Step", "Render_Block_Step", INT),
    ("Render_Console", "Render_Console", BOOL),
    ("Render_File", "Render_File", STR),
    ("Render_Pattern", "Render_Pattern", INT),
    ("Sampling_Method", "Sampling_Method", INT),
    ("Split_Unions", "Split_Unions", BOOL),
    ("Start_Column", "Start_Column", FLOAT),
    ("Start_Row", "Start_Row", FLOAT),
    ("Statistic_Console", "Statistic_Console", BOOL),
    ("Statistic_File", "Statistic_File", STR),
    ("Subset_End_Frame", "Subset_End_Frame", FLOAT),
    ("Subset_Start_Frame", "Subset_Start_Frame", FLOAT),
    ("Test_Abort_Count", "Test_Abort_Count", INT),
    ("Test_Abort", "Test_Abort", BOOL),
    ("User_Abort_Command", "User_Abort_Command", SPECIAL),
    ("User_Abort_Return", "User_Abort_Command", SPECIAL),
    ("Verbose", "Verbose", BOOL),
    ("Version", "Version", FLOAT),
    ("Video_Mode", "Video_Mode", SPECIAL),
    ("Vista_Buffer", "Vista_Buffer", BOOL),
    ("Warning_Console", "Warning_Console", BOOL),
    ("Warning_File", "Warning_File", STR),
    ("Warning_Level", "Warning_Level", INT),
    ("Width", "Width", INT),
    ("Work_Threads", "Work_Threads", INT),
)
INI_TABLE = {row[0].lower(): row for row in INI_ROWS}

# Switch -> (parameter attribute, type, boolean attribute set by +/-). Order
# matters: the first entry whose letters prefix the switch and whose
# parameter rule fits wins, so longer names come first and a switch with an
# optional parameter has two rows (with, then without).
SWITCHES: tuple[tuple[str, str | None, str, str | None], ...] = (
    ("AG", "Antialias_Gamma", FLOAT, None),
    ("AM", "Sampling_Method", INT, None),
    ("A0", "Antialias_Threshold", FLOAT, "Antialias"),
    ("A", None, NONE, "Antialias"),
    ("BM", "Bounding_Method", INT, None),
    ("BS", "Render_Block_Size", INT, None),
    ("B", None, NONE, "Bounding"),
    ("C", None, NONE, "Continue_Trace"),
    ("D", "Display", SPECIAL, "Display"),
    ("D", None, NONE, "Display"),
    ("EC", "End_Column", FLOAT, None),
    ("EF0", "Subset_End_Frame", FLOAT, None),
    ("EF", "Subset_End_Frame", INT, None),
    ("EP", "Preview_End_Size", INT, None),
    ("ER", "End_Row", FLOAT, None),
    ("F", "Output_File_Type", SPECIAL, "Output_To_File"),
    ("F", None, NONE, "Output_To_File"),
    ("GA", "All_File", STR, "All_Console"),
    ("GA", None, NONE, "All_Console"),
    ("GD", "Debug_File", STR, "Debug_Console"),
    ("GD", None, NONE, "Debug_Console"),
    ("GF", "Fatal_File", STR, "Fatal_Console"),
    ("GF", None, NONE, "Fatal_Console"),
    ("GI", "Create_Ini", STR, None),
    ("GP", None, NONE, "Append_File"),
    ("GR", "Render_File", STR, "Render_Console"),
    ("GR", None, NONE, "Render_Console"),
    ("GS", "Statistic_File", STR, "Statistic_Console"),
    ("GS", None, NONE, "Statistic_Console"),
    ("GW", "Warning_File", STR, "Warning_Console"),
    ("GW", None, NONE, "Warning_Console"),
    ("HI", "Include_Header", STR, None),
    ("HR", None, NONE, "High_Reproducibility"),
    ("H", "Height", INT, None),
    ("I", "Input_File_Name", STR, None),
    ("J", "Jitter_Amount", FLOAT, "Jitter"),
    ("J", None, NONE, "Jitter"),
    ("KC", None, NONE, "Cyclic_Animation"),
    ("KI", "Initial_Clock", FLOAT, None),
    ("KFF", "Final_Frame", INT, None),
    ("KFI", "Initial_Frame", INT, None),
    ("KF", "Final_Clock", FLOAT, None),
    ("KLA", None, NONE, "Clockless_Animation"),
    ("K", "Clock", FLOAT, None),
    ("L", "Library_Path", SPECIAL, None),
    ("MB", "Bounding_Threshold", INT, "Bounding"),
    ("MB", None, NONE, "Bounding"),
    ("MI", "Max_Image_Buffer_Memory", INT, None),
    ("MV", "Version", FLOAT, None),
    ("O", "Output_File_Name", STR, None),
    ("P", None, NONE, "Pause_When_Done"),
    ("Q", "Quality", INT, None),
    ("RFI", None, NONE, "Radiosity_From_File"),
    ("RFO", None, NONE, "Radiosity_To_File"),
    ("RF", "Radiosity_File_Name", STR, None),
    ("RS", "Render_Block_Step", INT, None),
    ("RP", "Render_Pattern", INT, None),
    ("RTR", None, NONE, "Real_Time_Raytracing"),
    ("RVP", None, NONE, "Radiosity_Vain_Pretrace"),
    ("R", "Antialias_Depth", INT, None),
    ("SC", "Start_Column", FLOAT, None),
    ("SF0", "Subset_Start_Frame", FLOAT, None),
    ("SF", "Subset_Start_Frame", INT, None),
    ("SP", "Preview_Start_Size", INT, None),
    ("SR", "Start_Row", FLOAT, None),
    ("STP", "Frame_Step", INT, None),
    ("SU", None, NONE, "Split_Unions"),
    ("TH", "Dither_Method", SPECIAL, "Dither"),
    ("TH", None, NONE, "Dither"),
    ("UA", None, NONE, "Output_Alpha"),
    ("UD", None, NONE, "Draw_Vistas"),
    ("UF", None, NONE, "Field_Render"),
    ("UL", None, NONE, "Light_Buffer"),
    ("UO", None, NONE, "Odd_Field"),
    ("UR", None, NONE, "Remove_Bounds"),
    ("UV", None, NONE, "Vista_Buffer"),
    ("V", None, NONE, "Verbose"),
    ("WL", "Warning_Level", INT, None),
    ("WT", "Work_Threads", INT, None),
    ("W", "Width", INT, None),
    ("X", "Test_Abort_Count", SPECIAL, "Test_Abort"),
    ("X", None, NONE, "Test_Abort"),
)

# Output file type letters 3.7.0.10 knows (no 'S': the Debian build has no
# system format) -> (extension, 16-bit grayscale capable).
FILE_TYPES = {
    "T": (".tga", False),
    "C": (".tga", False),
    "N": (".png", True),
    "J": (".jpg", False),
    "P": (".ppm", True),
    "B": (".bmp", False),
    "E": (".exr", False),
    "H": (".hdr", False),
}
DITHER_METHODS = ("B2", "B3", "B4", "D1", "D2", "FS")
GAMMA_TYPES = ("SRGB",)
COMMANDS = (
    "Pre_Scene_Command",
    "Pre_Frame_Command",
    "Post_Frame_Command",
    "Post_Scene_Command",
    "User_Abort_Command",
    "Fatal_Error_Command",
)
STREAM_FILES = (
    ("All_File", "GA"),
    ("Debug_File", "GD"),
    ("Fatal_File", "GF"),
    ("Render_File", "GR"),
    ("Statistic_File", "GS"),
    ("Warning_File", "GW"),
)
# Arguments the unix front end takes for itself (help, version, benchmark).
FRONTEND_ARGS = (
    "--help",
    "-help",
    "-h",
    "-?",
    "--version",
    "-version",
    "--V",
    "--benchmark",
    "-benchmark",
)
QUOTES = "\"'"
SPACE = " \t\n\r\v\f"
