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
