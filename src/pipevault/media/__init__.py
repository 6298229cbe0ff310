"""Storage media behind one interface with declared capabilities: disk, tape, optical.

Layer: core. May import format and the foundation; never pipe, catalog or anything above.

Every medium is a :class:`Volume` of fixed-size blocks with frozen :class:`Capabilities`;
operations outside them raise :class:`~pipevault.media.errors.MediaUnsupported`. Statistics,
fault injection and read-only access are wrappers of the same interface. Pools, volume states
and migration plans are plain dataclasses with pure functions over them, so the catalog can
persist them field by field (management classes and the storage map live in the catalog).
``pipevault.media.testing`` is the conformance suite every implementation passes.
"""

from pipevault.media._disk import DiskPoolDirectory as DiskPoolDirectory
from pipevault.media._disk import DiskVolume as DiskVolume
from pipevault.media._memory import MemoryVolume as MemoryVolume
from pipevault.media._optical import Descriptor as Descriptor
from pipevault.media._optical import FamilyVolume as FamilyVolume
from pipevault.media._optical import OpticalFamily as OpticalFamily
from pipevault.media._optical import OpticalVolume as OpticalVolume
from pipevault.media._plans import MigrationPlan as MigrationPlan
from pipevault.media._plans import ReclamationPlan as ReclamationPlan
from pipevault.media._plans import StoredExtent as StoredExtent
from pipevault.media._plans import plan_migration as plan_migration
from pipevault.media._plans import plan_reclamation as plan_reclamation
from pipevault.media._pools import Occupancy as Occupancy
from pipevault.media._pools import Pool as Pool
from pipevault.media._pools import PoolVolume as PoolVolume
from pipevault.media._pools import VolumeState as VolumeState
from pipevault.media._pools import choose_volume as choose_volume
from pipevault.media._pools import mark_full as mark_full
from pipevault.media._pools import new_volume as new_volume
from pipevault.media._pools import occupancy as occupancy
from pipevault.media._pools import record_release as record_release
from pipevault.media._pools import record_write as record_write
from pipevault.media._pools import settle as settle
from pipevault.media._pools import transition as transition
from pipevault.media._tape_cartridge import label_cartridge as label_cartridge
from pipevault.media._tape_drive import TapeDrive as TapeDrive
from pipevault.media._tape_drive import TapeStatistics as TapeStatistics
from pipevault.media._tape_library import InventoryEntry as InventoryEntry
from pipevault.media._tape_library import TapeLibrary as TapeLibrary
from pipevault.media._tape_motion import MotionStatistics as MotionStatistics
from pipevault.media._tape_profile import LTO8 as LTO8
from pipevault.media._tape_profile import LTO9 as LTO9
from pipevault.media._tape_profile import TapeProfile as TapeProfile
from pipevault.media._volume import SUPERBLOCK_SIZE as SUPERBLOCK_SIZE
from pipevault.media._volume import BlockData as BlockData
from pipevault.media._volume import Capabilities as Capabilities
from pipevault.media._volume import PositionCost as PositionCost
from pipevault.media._volume import Volume as Volume
from pipevault.media._volume import VolumeLabel as VolumeLabel
from pipevault.media._volume import VolumeStatus as VolumeStatus
from pipevault.media._wrappers import FaultyVolume as FaultyVolume
from pipevault.media._wrappers import ReadOnlyVolume as ReadOnlyVolume
from pipevault.media._wrappers import StatisticsVolume as StatisticsVolume
from pipevault.media._wrappers import VolumeStatistics as VolumeStatistics
from pipevault.media._wrappers import VolumeWrapper as VolumeWrapper
from pipevault.media._wrappers import find_layer as find_layer

__all__ = [
    "LTO8",
    "LTO9",
    "SUPERBLOCK_SIZE",
    "BlockData",
    "Capabilities",
    "Descriptor",
    "DiskPoolDirectory",
    "DiskVolume",
    "FamilyVolume",
    "FaultyVolume",
    "InventoryEntry",
    "MemoryVolume",
    "MigrationPlan",
    "MotionStatistics",
    "Occupancy",
    "OpticalFamily",
    "OpticalVolume",
    "Pool",
    "PoolVolume",
    "PositionCost",
    "ReadOnlyVolume",
    "ReclamationPlan",
    "StatisticsVolume",
    "StoredExtent",
    "TapeDrive",
    "TapeLibrary",
    "TapeProfile",
    "TapeStatistics",
    "Volume",
    "VolumeLabel",
    "VolumeState",
    "VolumeStatistics",
    "VolumeStatus",
    "VolumeWrapper",
    "choose_volume",
    "find_layer",
    "label_cartridge",
    "mark_full",
    "new_volume",
    "occupancy",
    "plan_migration",
    "plan_reclamation",
    "record_release",
    "record_write",
    "settle",
    "transition",
]
