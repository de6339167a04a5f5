/*
 * Read-only memory mapping of a whole file. Model weights are used in place from
 * the mapping, so a model costs page cache, not heap.
 */
#ifndef PLM_CORE_MAPPED_FILE_H
#define PLM_CORE_MAPPED_FILE_H

#include <stddef.h>
#include <stdint.h>

struct mapped_file {
    const uint8_t *data;
    size_t size;
};

/* Returns PLM_OK or a negative status with plm_last_error() set (names the path). */
int mapped_file_open(struct mapped_file *file, const char *path);
void mapped_file_close(struct mapped_file *file);

/* Drops the pages wholly inside [p, p + n) from the process's resident
 * memory, for a range that has been used (a finished chunk of a gap
 * reference) or copied elsewhere (packed weights); they are read from the
 * file again if touched. Does nothing for a range outside the mapping. */
void mapped_file_release(const struct mapped_file *file, const void *p, size_t n);

/* Reads a whole (small) file into a NUL-terminated heap buffer; *size excludes the NUL. */
int read_whole_file(const char *path, char **text, size_t *size);

#endif
