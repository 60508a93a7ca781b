/* qcow2-format.h -- on-disk layout of qcow2 (version 2 and 3).
 *
 * Spec: QEMU docs/interop/qcow2.txt (7.2); facts and traps in
 * docs/qcow2.md.  Everything is big-endian.  Offsets are byte
 * offsets into the header cluster; we read each field with load_be*()
 * instead of casting a packed struct over file data.
 *
 *   0  magic "QFI\xfb"          4  version (2|3)
 *   8  backing_file_offset     16  backing_file_size
 *  20  cluster_bits            24  size (virtual, bytes)
 *  32  crypt_method            36  l1_size (entries)
 *  40  l1_table_offset         48  refcount_table_offset
 *  56  refcount_table_clusters 60  nb_snapshots
 *  64  snapshots_offset        72  end of the v2 header
 *  72  incompatible_features   80  compatible_features
 *  88  autoclear_features      96  refcount_order
 * 100  header_length          104  compression_type (if header_length > 104)
 */
#ifndef QCOWLIB_QCOW2_FORMAT_H
#define QCOWLIB_QCOW2_FORMAT_H

#define QCOW2_MAGIC 0x514649fbu

#define QCOW2_HDR_MAGIC          0
#define QCOW2_HDR_VERSION        4
#define QCOW2_HDR_BACKING_OFFSET 8
#define QCOW2_HDR_BACKING_SIZE   16
#define QCOW2_HDR_CLUSTER_BITS   20
#define QCOW2_HDR_SIZE           24
#define QCOW2_HDR_CRYPT_METHOD   32
#define QCOW2_HDR_L1_SIZE        36
#define QCOW2_HDR_L1_OFFSET      40
#define QCOW2_HDR_REFT_OFFSET    48
#define QCOW2_HDR_REFT_CLUSTERS  56
#define QCOW2_HDR_NB_SNAPSHOTS   60
#define QCOW2_HDR_SNAPSHOTS_OFF  64
#define QCOW2_HDR_V2_LENGTH      72
#define QCOW2_HDR_INCOMPAT       72
#define QCOW2_HDR_COMPAT         80
#define QCOW2_HDR_AUTOCLEAR      88
#define QCOW2_HDR_REFCOUNT_ORDER 96
#define QCOW2_HDR_HEADER_LENGTH  100
#define QCOW2_HDR_V3_MIN_LENGTH  104
#define QCOW2_HDR_COMPRESSION    104

/* Limits QEMU 7.2 enforces at open (block/qcow2.h). */
#define QCOW2_MIN_CLUSTER_BITS   9
#define QCOW2_MAX_CLUSTER_BITS   21
#define QCOW2_MAX_L1_BYTES       (32u << 20)  /* QCOW_MAX_L1_SIZE */
#define QCOW2_MAX_REFTABLE_BYTES (8u << 20)   /* QCOW_MAX_REFTABLE_SIZE */
#define QCOW2_MAX_REFCOUNT_ORDER 6
#define QCOW2_MAX_BACKING_NAME   1023
#define QCOW2_MAX_FORMAT_NAME    15           /* char backing_format[16] */
#define QCOW2_MAX_SNAPSHOTS      65536
#define QCOW2_MAX_SNAPSHOTS_SIZE (1024u * 65536u) /* whole table, bytes */
#define QCOW2_MAX_SNAPSHOT_EXTRA 1024

/* Feature bits. */
#define QCOW2_INCOMPAT_DIRTY       (1ull << 0)
#define QCOW2_INCOMPAT_CORRUPT     (1ull << 1)
#define QCOW2_INCOMPAT_DATA_FILE   (1ull << 2)
#define QCOW2_INCOMPAT_COMPRESSION (1ull << 3)
#define QCOW2_INCOMPAT_EXTL2       (1ull << 4)
#define QCOW2_INCOMPAT_KNOWN       0x1full
#define QCOW2_AUTOCLEAR_BITMAPS    (1ull << 0)
#define QCOW2_AUTOCLEAR_DATA_RAW   (1ull << 1)

#define QCOW2_COMPRESSION_DEFLATE 0
#define QCOW2_COMPRESSION_ZSTD    1

/* Header extensions: u32 type, u32 length, data, padded to 8 bytes. */
#define QCOW2_EXT_END            0x00000000u
#define QCOW2_EXT_BACKING_FORMAT 0xe2792acau
#define QCOW2_EXT_FEATURE_TABLE  0x6803f857u
#define QCOW2_EXT_BITMAPS        0x23852875u
#define QCOW2_EXT_CRYPTO         0x0537be77u
#define QCOW2_EXT_DATA_FILE      0x44415441u
#define QCOW2_FEATURE_ENTRY_SIZE 48  /* u8 type, u8 bit, char name[46] */

/* L1 / L2 entries (block/qcow2.h). */
#define QCOW2_L1E_OFFSET_MASK 0x00fffffffffffe00ull
#define QCOW2_L2E_OFFSET_MASK 0x00fffffffffffe00ull
#define QCOW2_OFLAG_COPIED     (1ull << 63)
#define QCOW2_OFLAG_COMPRESSED (1ull << 62)
#define QCOW2_OFLAG_ZERO       (1ull << 0)
#define QCOW2_SUBCLUSTERS      32   /* per cluster with extended L2 */
#define QCOW2_L2_BITMAP_ALL_ALLOC 0xffffffffull

/* Snapshot table entry header (variable-length entries, padded to 8). */
#define QCOW2_SN_L1_OFFSET   0
#define QCOW2_SN_L1_SIZE     8
#define QCOW2_SN_ID_SIZE     12
#define QCOW2_SN_NAME_SIZE   14
#define QCOW2_SN_EXTRA_SIZE  36
#define QCOW2_SN_HEADER_SIZE 40

/* Bitmaps extension payload (24 bytes) and directory entries. */
#define QCOW2_BMEXT_SIZE        24
#define QCOW2_MAX_BITMAPS       65535
#define QCOW2_MAX_BITMAP_DIR    (1024ull * 65535)
#define QCOW2_BME_HEADER_SIZE   24
#define QCOW2_BME_MAX_TABLE     0x8000000u
#define QCOW2_BME_MAX_PHYS      (512ull << 20)
#define QCOW2_BME_MIN_GRAN_BITS 9
#define QCOW2_BME_MAX_GRAN_BITS 31
#define QCOW2_BME_MAX_NAME      1023
#define QCOW2_BME_FLAG_IN_USE   (1u << 0)
#define QCOW2_BME_FLAG_AUTO     (1u << 1)
#define QCOW2_BME_RESERVED      0xfffffffcu
#define QCOW2_BME_TYPE_DIRTY    1
#define QCOW2_BME_TABLE_OFFSET_MASK 0x00fffffffffffe00ull
#define QCOW2_BME_TABLE_RESERVED    0xff000000000001feull

#endif
