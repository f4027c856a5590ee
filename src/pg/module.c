/*
 * glintru.c — module entry point: GUCs and shared memory hooks.
 */
#include "postgres.h"

#include "fmgr.h"

#include "glintru.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	glintru_shmem_init();
}
