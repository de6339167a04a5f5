#include "core/mapped_file.h"

#include "core/error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int mapped_file_open(struct mapped_file *file, const char *path)
{
    file->data = NULL;
    file->size = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return plm_fail(PLM_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return plm_fail(PLM_ERR_IO, "'%s' is not a regular file", path);
    }
    if (st.st_size == 0) {
        close(fd);
        return plm_fail(PLM_ERR_FORMAT, "'%s' is empty", path);
    }
    void *data = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (data == MAP_FAILED)
        return plm_fail(PLM_ERR_IO, "cannot map '%s': %s", path, strerror(errno));
    file->data = data;
    file->size = (size_t)st.st_size;
    return PLM_OK;
}

void mapped_file_close(struct mapped_file *file)
{
    if (file->data)
        munmap((void *)file->data, file->size);
    file->data = NULL;
    file->size = 0;
}

void mapped_file_release(const struct mapped_file *file, const void *p, size_t n)
{
    const uintptr_t start = (uintptr_t)p, end = start + n;
    const uintptr_t map_start = (uintptr_t)file->data, map_end = map_start + file->size;
    if (!file->data || start < map_start || end > map_end)
        return;
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    const uintptr_t first = (start + page - 1) / page * page, last = end / page * page;
    if (first >= last)
        return;
    /* Not in huge pages first: the page cache may hold the file in 2 MiB
     * folios, and a fault in a neighbouring tensor would map the whole folio
     * back, released part and all (2 MiB per boundary, 63 MiB for a 1B
     * model). */
    madvise((void *)first, last - first, MADV_NOHUGEPAGE);
    /* A private read-only mapping of a file: dropped pages come back from
     * the file unchanged, so this cannot lose data. */
    madvise((void *)first, last - first, MADV_DONTNEED);
}

int read_whole_file(const char *path, char **text, size_t *size)
{
    *text = NULL;
    *size = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return plm_fail(PLM_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        len += fread(buf + len, 1, cap - len, f);
        if (len < cap)
            break;
        char *grown = realloc(buf, 2 * cap + 1);
        if (!grown)
            free(buf);
        buf = grown;
        cap *= 2;
    }
    int failed = ferror(f);
    fclose(f);
    if (!buf)
        return plm_fail(PLM_ERR_NOMEM, "out of memory reading '%s'", path);
    if (failed) {
        free(buf);
        return plm_fail(PLM_ERR_IO, "error reading '%s'", path);
    }
    buf[len] = '\0';
    *text = buf;
    *size = len;
    return PLM_OK;
}
