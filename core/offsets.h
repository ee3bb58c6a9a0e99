/* offsets.h -- `storepulse offsets`: show the stored, committed and log
 * offsets of every input partition; reset stored offsets (operators). */
#ifndef SP_OFFSETS_H
#define SP_OFFSETS_H

int sp_offsets_main(int argc, char **argv);

#endif
